// Package clifmt holds the output formats shared by vonctl commands: every
// command prints -o table (for people), json or yaml (for scripts; the two
// carry the same fields, named by the json tags), and a command may add its
// own (paths adds dot and svg).
package clifmt

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Format is an output format name as given to -o.
type Format string

// The formats.
const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
	Dot   Format = "dot"
	SVG   Format = "svg"
)

// Common is what every command accepts.
var Common = []Format{Table, JSON, YAML}

// Parse checks s against the formats a command accepts ("" means table).
func Parse(s string, allowed ...Format) (Format, error) {
	if s == "" {
		s = string(Table)
	}
	f := Format(strings.ToLower(s))
	if !slices.Contains(allowed, f) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = string(a)
		}
		return "", fmt.Errorf("unknown output format %q: use one of %s", s, strings.Join(names, ", "))
	}
	return f, nil
}

// WriteJSON writes v as indented JSON with a trailing newline.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteYAML writes v as YAML with the same field names as WriteJSON.
func WriteYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Write writes v as JSON or YAML; it is an error for other formats.
func Write(w io.Writer, f Format, v any) error {
	switch f {
	case JSON:
		return WriteJSON(w, v)
	case YAML:
		return WriteYAML(w, v)
	}
	return fmt.Errorf("format %q is not structured", f)
}

// NewTable returns a tab writer for aligned columns; call Flush when done.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
