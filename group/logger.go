package group

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logWriter forwards memberlist's log lines to a slog.Logger: [DEBUG] and [INFO] at
// debug level, [WARN] at info, [ERR] at warn.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	lvl := slog.LevelDebug
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		lvl = slog.LevelWarn
	case bytes.Contains(p, []byte("[WARN]")):
		lvl = slog.LevelInfo
	}
	if w.log.Enabled(context.Background(), lvl) {
		w.log.Log(context.Background(), lvl, string(bytes.TrimSpace(p)), "component", "memberlist")
	}
	return len(p), nil
}

// newMemberlistLogger returns the *log.Logger memberlist wants, writing to l.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&logWriter{l}, "", 0)
}
