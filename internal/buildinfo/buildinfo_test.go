package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func stamped(modified string) *debug.BuildInfo {
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/vonproject/von", Version: "v0.0.0-20261202123456-b960a7c1a2b3"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "b960a7c1a2b3c4d5e6f708192a3b4c5d6e7f8091"},
			{Key: "vcs.time", Value: "2026-12-02T12:34:56Z"},
			{Key: "vcs.modified", Value: modified},
		},
	}
}

func TestFromBuildInfoStamped(t *testing.T) {
	i := FromBuildInfo(stamped("false"), true, "")
	want := Info{
		Version:   "v0.0.0-20261202123456-b960a7c1a2b3",
		Revision:  "b960a7c1a2b3c4d5e6f708192a3b4c5d6e7f8091",
		Time:      time.Date(2026, 12, 2, 12, 34, 56, 0, time.UTC),
		GoVersion: "go1.26.8",
	}
	if i != want {
		t.Fatalf("FromBuildInfo = %+v, want %+v", i, want)
	}
	if got, want := i.String(), "v0.0.0-20261202123456-b960a7c1a2b3 (commit b960a7c, built 2026-12-02T12:34:56Z, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := i.Short(); got != i.Version {
		t.Errorf("Short() = %q, want the pseudo-version alone (it names the commit)", got)
	}
}

func TestModifiedTree(t *testing.T) {
	i := FromBuildInfo(stamped("true"), true, "")
	if !i.Modified || i.ShortRevision() != "b960a7c-dirty" {
		t.Fatalf("Modified %v, ShortRevision %q; want true, b960a7c-dirty", i.Modified, i.ShortRevision())
	}
	if s := i.String(); !strings.Contains(s, "(commit b960a7c-dirty, built 2026-12-02T12:34:56Z, go1.26.8)") {
		t.Errorf("String() = %q lacks the dirty commit", s)
	}
}

func TestOverrideAndUnstamped(t *testing.T) {
	i := FromBuildInfo(stamped("false"), true, "v1.2.3")
	if i.Version != "v1.2.3" || i.Short() != "v1.2.3 b960a7c" {
		t.Errorf("override: Version %q, Short %q; want v1.2.3, %q", i.Version, i.Short(), "v1.2.3 b960a7c")
	}
	// A build without VCS stamping (GOFLAGS=-buildvcs=false, go run, a tarball).
	bare := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/vonproject/von", Version: "(devel)"}}
	i = FromBuildInfo(bare, true, "")
	if got, want := i.String(), "(devel) (go1.26.8)"; got != want {
		t.Errorf("unstamped String() = %q, want %q", got, want)
	}
	if i.Short() != "(devel)" {
		t.Errorf("unstamped Short() = %q", i.Short())
	}
	// No build information at all.
	i = FromBuildInfo(nil, false, "")
	if got, want := i.String(), "(devel) (unknown Go version)"; got != want {
		t.Errorf("no build info: String() = %q, want %q", got, want)
	}
}

func TestGetReadsThisBinary(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Version == "" {
		t.Error("empty Version")
	}
	if Get() != i {
		t.Error("Get is not stable")
	}
}
