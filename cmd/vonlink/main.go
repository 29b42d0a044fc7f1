// Command vonlink gives unmodified programs a VON: `vonlink up` joins the VON as a
// member and creates a TUN interface with the member's overlay address; every IP
// packet through it is a VON message. `vonlink status` shows a running link.
// Logic lives in package vonlink; this main parses flags and prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clidocs"
	"github.com/vonproject/von/internal/clifmt"
	"github.com/vonproject/von/internal/logging"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/sdk"
	"github.com/vonproject/von/vonlink"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type usageErr struct{ error }

type opts struct {
	manager, on, member, dev, netns, control, output, logLevel, logFormat string
	mtu                                                                   int
	multicastRoute                                                        bool
	security                                                              pki.Flags
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := &opts{}
	root := &cobra.Command{
		Use:   "vonlink",
		Short: "Carry unmodified IP traffic over a VON through a TUN interface",
		Long: `vonlink joins a VON as one of its members and creates a TUN interface (von0) holding the
member's overlay address, with the ON's overlay prefix routed into it. Every IP packet
through the interface is a VON message: sealed under the group key, sent on both paths of
a redundant ON, delivered once. Programs reach another member at its overlay address
(vonctl get NAME shows them).

Creating the interface needs CAP_NET_ADMIN. Exit codes: 0 after SIGTERM or SIGINT (the
interface is removed), 1 on failure (the ON ended, the manager refused, no TUN), 2 on
usage errors.`,
		SilenceUsage: true, SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr{err} })
	clidocs.SetVersion(root)

	up := &cobra.Command{
		Use:   "up --manager ADDR --on NAME --member NAME [--dev von0] [--netns NS]",
		Short: "Join the VON and bring up its interface until SIGTERM",
		Example: `  vonlink up --manager mgr:7400 --on video --member h1 --cert h1.pem --key h1-key.pem --ca ca.pem
  # then, on another member: iperf3 -s; here: iperf3 -c <its overlay address>`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUp(cmd.Context(), o, stdout, stderr) },
	}
	fl := up.Flags()
	fl.StringVar(&o.manager, "manager", os.Getenv("VON_MANAGER"), "manager address host:port (env VON_MANAGER)")
	fl.StringVar(&o.on, "on", "", "the ON (reservation name) to join")
	fl.StringVar(&o.member, "member", "", "this member's name (a member of the ON)")
	fl.IntVar(&o.mtu, "mtu", 0, fmt.Sprintf("interface MTU (default: the underlay interface's MTU less the VON's headers, at most %d)", sdk.MaxMessage))
	fl.BoolVar(&o.multicastRoute, "multicast-route", false, "route 224.0.0.0/4 into the interface, for programs that send multicast without choosing an interface")
	fl.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error (logs go to stderr)")
	fl.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	o.security.Register(fl)

	status := &cobra.Command{
		Use:     "status [--dev von0] [--netns NS]",
		Short:   "Show a running link: members, epoch, counters",
		Example: "  vonlink status --netns h1 -o json",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), o, stdout) },
	}
	for _, c := range []*cobra.Command{up, status} {
		f := c.Flags()
		f.StringVar(&o.dev, "dev", vonlink.DefaultDev, "interface name")
		f.StringVar(&o.netns, "netns", "", "network namespace of the interface and the ON socket (the manager connection stays here)")
		f.StringVar(&o.control, "control", "", "control socket (default "+vonlink.ControlDir+"/[NETNS/]DEV.sock)")
		f.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	}
	root.AddCommand(up, status, clidocs.Command("8"))
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "vonlink: %v\n", err)
	var ue usageErr
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func (o *opts) controlPath() string {
	if o.control != "" {
		return o.control
	}
	return vonlink.ControlPath(o.netns, o.dev)
}

func runUp(ctx context.Context, o *opts, stdout, stderr io.Writer) error {
	f, err := clifmt.Parse(o.output, clifmt.Common...)
	if err != nil {
		return usageErr{err}
	}
	if o.manager == "" || o.on == "" || o.member == "" {
		return usageErr{errors.New("--manager (or $VON_MANAGER), --on and --member are required")}
	}
	log, err := logging.New(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return usageErr{err}
	}
	tls, err := o.security.Load(log, pki.KindUser)
	if err != nil {
		return usageErr{err}
	}
	cfg := vonlink.Config{SDK: sdk.Config{Manager: o.manager, TLS: tls, Insecure: tls == nil, ON: o.on, Member: o.member, Netns: o.netns},
		Dev: o.dev, MTU: o.mtu, MulticastRoute: o.multicastRoute, Logger: log}
	l, err := vonlink.Up(ctx, cfg)
	if err != nil {
		if errors.Is(err, vonlink.ErrConfig) {
			return usageErr{err}
		}
		return fmt.Errorf("join %s as %s: %w", o.on, o.member, err)
	}
	defer l.Close()
	ctl, err := vonlink.ServeControl(l, o.controlPath())
	if err != nil {
		return err
	}
	defer ctl.Close()
	if err := printStatus(stdout, f, l.Status(), true); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-l.Done():
		return l.Err()
	}
}

func runStatus(ctx context.Context, o *opts, stdout io.Writer) error {
	f, err := clifmt.Parse(o.output, clifmt.Common...)
	if err != nil {
		return usageErr{err}
	}
	s, err := vonlink.ReadStatus(ctx, o.controlPath())
	if err != nil {
		return err
	}
	return printStatus(stdout, f, s, false)
}

func printStatus(w io.Writer, f clifmt.Format, s vonlink.Status, brief bool) error {
	if f != clifmt.Table {
		return clifmt.Write(w, f, s)
	}
	copies := "one copy"
	if s.Redundant {
		copies = "two copies (redundant)"
	}
	fmt.Fprintf(w, "%s up: %s of ON %s (id %d, prefix %s) as %s, mtu %d, %s, epoch %d\n",
		s.Dev, s.Address, s.ON, s.ONID, s.Prefix, s.Member, s.MTU, copies, s.Epoch)
	if brief {
		return nil
	}
	tw := clifmt.NewTable(w)
	fmt.Fprintln(tw, "MEMBER\tOVERLAY\tUNDERLAY\tSTATE")
	for _, m := range s.Members {
		state := "down"
		switch {
		case m.Ready:
			state = "ready"
		case m.Live:
			state = "joining"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Address, orDash(m.Underlay), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	c := s.Counters
	fmt.Fprintf(w, "sent %d packets (%d bytes), received %d packets (%d bytes), up %s\n", c.TxPackets, c.TxBytes, c.RxPackets, c.RxBytes, s.Uptime)
	fmt.Fprintf(w, "copies on path 0 / 1: %d / %d, duplicates eliminated %d\n", c.PathCopies0, c.PathCopies1, c.Duplicates)
	drops := map[string]uint64{"not IPv4": c.NotIPv4, "outside the prefix": c.Outside, "no such member": c.NoMember,
		"member not ready": c.NotReady, "IGMP": c.IGMP, "send failed": c.SendErrors, "spoofed source": c.Spoofed,
		"not for this member": c.NotForUs, "interface refused": c.WriteErrors, "did not open": c.Rejected,
		"from strangers": c.Strangers, "receive overflow": c.VONOverflow, "socket refused": c.SocketErrors}
	var names []string
	for k, v := range drops {
		if v > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		fmt.Fprintln(w, "dropped: none")
		return nil
	}
	fmt.Fprint(w, "dropped:")
	for i, k := range names {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(w, "%s %s %d", sep, k, drops[k])
	}
	fmt.Fprintln(w)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
