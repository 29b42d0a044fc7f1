package pki

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
)

// Flags are the command-line flags every binary takes for its connections:
// --ca, --cert, --key (defaults from VON_CA, VON_CERT, VON_KEY) and --insecure.
type Flags struct {
	Files
	Insecure bool
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.CA, "ca", os.Getenv("VON_CA"), "CA certificate that signs every VON certificate (env VON_CA)")
	fs.StringVar(&f.Cert, "cert", os.Getenv("VON_CERT"), "this process's certificate (env VON_CERT)")
	fs.StringVar(&f.Key, "key", os.Getenv("VON_KEY"), "this process's private key (env VON_KEY)")
	fs.BoolVar(&f.Insecure, "insecure", false, "plaintext, unauthenticated gRPC: anyone who can connect can do anything (testing only)")
}

// Load returns the TLS material the flags name, checked to be of kind want.
// With --insecure and no certificate it returns nil and logs a warning; with
// neither it fails, saying how to create certificates.
func (f *Flags) Load(log *slog.Logger, want Kind) (*Material, error) {
	if f.Insecure {
		if f.CA != "" || f.Cert != "" || f.Key != "" {
			return nil, fmt.Errorf("--insecure and --ca/--cert/--key (or VON_CA/VON_CERT/VON_KEY) together: choose one")
		}
		if log != nil {
			log.Warn("--insecure: gRPC is plaintext and unauthenticated; anyone who can reach this process can act as any manager, agent or user")
		}
		return nil, nil
	}
	if f.CA == "" && f.Cert == "" && f.Key == "" {
		return nil, fmt.Errorf("%w: give --ca, --cert and --key (or VON_CA, VON_CERT, VON_KEY).\n"+
			"Create them with\n  von-manager pki init --dir DIR\n  von-manager pki issue --dir DIR --kind %s --name NAME\n"+
			"or pass --insecure for plaintext, unauthenticated connections (testing only)", ErrNoCredentials, want)
	}
	m, err := Load(f.Files)
	if err != nil {
		return nil, err
	}
	if m.Identity().Kind != want {
		return nil, fmt.Errorf("certificate %s names %s; this program needs a certificate of kind %s", f.Cert, m.Identity(), want)
	}
	return m, nil
}
