package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/pki"
)

func pkiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create the certificates managers, agents and users present to each other",
		Long: `Every VON connection is mutual TLS 1.3 with certificates from one CA. A certificate
names its holder: a manager, an agent (named after its router) or a user (vonctl,
the SDK, vonperf; an admin user may also apply topologies and see every ON).

  von-manager pki init  --dir DIR                       create the CA (ca.crt, ca.key)
  von-manager pki issue --dir DIR --kind KIND --name N  issue N.crt and N.key

Give each process ca.crt and its own certificate and key (--ca, --cert, --key or
VON_CA, VON_CERT, VON_KEY). Keep ca.key away from routers and users.`,
		Args: cobra.NoArgs,
	}
	var dir string
	initCmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a certificate authority in DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.Init(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created the CA in %s (ca.crt; keep ca.key secret)\n", dir)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory for the CA (created if missing)")
	_ = initCmd.MarkFlagRequired("dir")

	var (
		kind, name, hosts, out string
		admin                  bool
		validity               time.Duration
	)
	issue := &cobra.Command{
		Use:   "issue --dir DIR --kind manager|agent|user --name NAME [--admin]",
		Short: "Issue a certificate and key signed by the CA in DIR",
		Example: `  von-manager pki issue --dir /etc/von/pki --kind manager --name m1
  von-manager pki issue --dir /etc/von/pki --kind agent --name r1
  von-manager pki issue --dir /etc/von/pki --kind user --name alice --admin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := pki.IssueRequest{Identity: pki.Identity{Kind: pki.Kind(kind), Name: name, Admin: admin}, Validity: validity, Out: out}
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					req.Hosts = append(req.Hosts, h)
				}
			}
			crt, key, err := pki.Issue(dir, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s: %s, %s\n", req.Identity, crt, key)
			return nil
		},
	}
	f := issue.Flags()
	f.StringVar(&dir, "dir", "", "directory of the CA; the certificate and key are written there")
	f.StringVar(&out, "out", "", "directory for NAME.crt and NAME.key (default: --dir)")
	f.StringVar(&kind, "kind", "", "manager, agent (name it after its router) or user")
	f.StringVar(&name, "name", "", "the holder's name: a manager's id, the router's node name, a user name")
	f.BoolVar(&admin, "admin", false, "a user who may apply topologies and see, renew and release every ON")
	f.StringVar(&hosts, "host", "", "comma-separated DNS names or IPs to add (only for other tools; VON peers check the name, not the host)")
	f.DurationVar(&validity, "valid-for", 365*24*time.Hour, "how long the certificate is valid")
	for _, n := range []string{"dir", "kind", "name"} {
		_ = issue.MarkFlagRequired(n)
	}
	cmd.AddCommand(initCmd, issue)
	return cmd
}
