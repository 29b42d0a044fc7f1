// Package buildinfo says what a VON binary was built from, for --version and for
// what an agent reports to its manager: the module version, the VCS commit and its
// time, whether the work tree had uncommitted changes, and the Go version.
//
// All of it comes from runtime/debug.ReadBuildInfo, which `go build` fills in.
// The VCS fields are stamped only when the build runs in a git checkout with VCS
// stamping on: `make build` and `make package` pass -buildvcs=auto, since
// GOFLAGS=-buildvcs=false (set on some machines) or a build outside a checkout
// leaves them empty. A release build from a source tarball can set the version
// with
//
//	go build -ldflags "-X github.com/vonproject/von/internal/buildinfo.version=v1.2.3"
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// version, when set with -ldflags -X, overrides the module version.
var version string

// Info describes one build.
type Info struct {
	// Version is the main module's version: a tag such as v1.2.3, a
	// pseudo-version (v0.0.0-20261202123456-b960a7c1a2b3, "+dirty" when the
	// tree was modified), or "(devel)" when the go command knew none.
	Version   string
	Revision  string    // full VCS commit hash; empty when not stamped
	Time      time.Time // commit time (a build's inputs, not the clock, decide it); zero when not stamped
	Modified  bool      // the work tree had uncommitted changes
	GoVersion string    // toolchain, e.g. go1.26.8
}

// Get returns the running binary's build information (computed once).
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return FromBuildInfo(bi, ok, version)
})

// FromBuildInfo extracts Info from bi (as debug.ReadBuildInfo returns it: ok false
// means none was available); override, when not empty, replaces the module version.
func FromBuildInfo(bi *debug.BuildInfo, ok bool, override string) Info {
	var i Info
	if ok && bi != nil {
		i.Version = bi.Main.Version
		i.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					i.Time = t.UTC()
				}
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if override != "" {
		i.Version = override
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.GoVersion == "" {
		i.GoVersion = "unknown Go version"
	}
	return i
}

// ShortRevision is the commit hash cut to 7 characters, as `git log --oneline`
// shows it, with "-dirty" when the tree was modified; empty when not stamped.
func (i Info) ShortRevision() string {
	r := i.Revision
	if len(r) > 7 {
		r = r[:7]
	}
	if r != "" && i.Modified {
		r += "-dirty"
	}
	return r
}

// String is what --version prints after the program's name:
//
//	v0.0.0-20261202123456-b960a7c1a2b3 (commit b960a7c, built 2026-12-02T12:34:56Z, go1.26.8)
//
// "built" gives the commit time, so that rebuilding a commit prints the same.
func (i Info) String() string {
	var parts []string
	if r := i.ShortRevision(); r != "" {
		parts = append(parts, "commit "+r)
	}
	if !i.Time.IsZero() {
		parts = append(parts, "built "+i.Time.Format(time.RFC3339))
	}
	parts = append(parts, i.GoVersion)
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}

// Short is the version with the short commit when the version does not already
// name it, e.g. "(devel) b960a7c" or "v1.2.3": what an agent reports to its manager.
func (i Info) Short() string {
	r := i.ShortRevision()
	if r == "" || (len(i.Revision) >= 12 && strings.Contains(i.Version, i.Revision[:12])) {
		return i.Version
	}
	return i.Version + " " + r
}
