//go:build !linux

package partition

import "context"

// Router is unavailable outside Linux.
type Router struct{}

// New returns ErrUnsupportedPlatform outside Linux.
func New(ctx context.Context, cfg Config) (*Router, error) { return nil, ErrUnsupportedPlatform }

// Apply returns ErrUnsupportedPlatform outside Linux.
func (r *Router) Apply(ctx context.Context, d Desired) error { return ErrUnsupportedPlatform }

// Remove returns ErrUnsupportedPlatform outside Linux.
func (r *Router) Remove(ctx context.Context, onID uint32) error { return ErrUnsupportedPlatform }

// Observe returns ErrUnsupportedPlatform outside Linux.
func (r *Router) Observe(ctx context.Context) (Observed, error) {
	return Observed{}, ErrUnsupportedPlatform
}

// Close returns nil.
func (r *Router) Close() error { return nil }

// Update returns ErrUnsupportedPlatform outside Linux.
func (r *Router) Update(ctx context.Context, d Desired) error { return ErrUnsupportedPlatform }
