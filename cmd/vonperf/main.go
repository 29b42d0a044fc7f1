// Command vonperf checks a VON the way an application uses it: `send` paces test
// messages to a member through the SDK, `recv` counts what arrived (lost, duplicate
// copies eliminated, reordered, copies per path, latency, epochs). Logic lives in
// package perf; this main parses flags and prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clidocs"
	"github.com/vonproject/von/internal/clifmt"
	"github.com/vonproject/von/internal/logging"
	"github.com/vonproject/von/perf"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/sdk"
)

type common struct {
	manager, on, member, netns, output, logLevel, keyLog string
	security                                             pki.Flags
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type usageErr struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &common{}
	root := &cobra.Command{
		Use:   "vonperf",
		Short: "Measure a VON: paced messages through the SDK and what arrived",
		Long: `vonperf joins a VON through the SDK, as an application does. Start 'vonperf recv' on the
receiving member, then 'vonperf send' on the sender. A run that completed exits 0 whatever
it counted (the summary is the result); setup errors exit 1, usage errors 2.`,
		SilenceUsage: true, SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr{err} })
	clidocs.SetVersion(root)
	pf := root.PersistentFlags()
	pf.StringVar(&c.manager, "manager", os.Getenv("VON_MANAGER"), "manager address host:port (env VON_MANAGER)")
	pf.StringVar(&c.on, "on", "", "the ON (reservation name) to join")
	pf.StringVar(&c.member, "member", "", "this member's name (a member of the ON)")
	pf.StringVar(&c.netns, "netns", "", "network namespace for the ON socket (the manager connection stays here)")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVar(&c.logLevel, "log-level", "warn", "log level: debug, info, warn, error (logs go to stderr)")
	c.security.Register(pf)
	pf.StringVar(&c.keyLog, "key-log", "", "append this member's group keys to FILE, to open captured packets while debugging (whoever reads it reads the VON)")

	var duration time.Duration
	recv := &cobra.Command{
		Use:   "recv --on NAME --member NAME [--duration 30s]",
		Short: "Count test messages until --duration passes or a run is complete",
		Example: `  vonperf recv --manager mgr:7400 --on video --member h2 --duration 30s -o json
  # json keys: sent delivered lost duplicates reordered per_path latency_p50_ms latency_p99_ms epochs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withVON(cmd.Context(), c, stderr, func(v *sdk.VON, f clifmt.Format) error {
				s, err := perf.Recv(cmd.Context(), v, duration)
				if err != nil {
					return err
				}
				return printRecv(stdout, f, s)
			})
		},
	}
	recv.Flags().DurationVar(&duration, "duration", 30*time.Second, "longest time to wait for the run")

	sc := perf.SendConfig{}
	send := &cobra.Command{
		Use:     "send --on NAME --member NAME --to MEMBER --rate MSGS_PER_S --count N --size BYTES",
		Short:   "Pace --count messages of --size bytes to --to at --rate messages per second",
		Example: `  vonperf send --manager mgr:7400 --on video --member h1 --to h2 --rate 1000 --count 5000 --size 1000 -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sc.To == "" {
				return usageErr{errors.New("send needs --to MEMBER")}
			}
			return withVON(cmd.Context(), c, stderr, func(v *sdk.VON, f clifmt.Format) error {
				s, err := perf.Send(cmd.Context(), v, sc)
				if err != nil {
					return err
				}
				return printSend(stdout, f, s)
			})
		},
	}
	fl := send.Flags()
	fl.StringVar(&sc.To, "to", "", "receiving member")
	fl.Float64Var(&sc.Rate, "rate", 1000, "messages per second")
	fl.Uint64Var(&sc.Count, "count", 1000, "messages to send")
	fl.IntVar(&sc.Size, "size", 1000, fmt.Sprintf("bytes per message (%d..%d)", perf.HeaderLen, sdk.MaxMessage))
	root.AddCommand(recv, send)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "vonperf: %v\n", err)
	var ue usageErr
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func withVON(ctx context.Context, c *common, stderr io.Writer, fn func(*sdk.VON, clifmt.Format) error) error {
	f, err := clifmt.Parse(c.output, clifmt.Common...)
	if err != nil {
		return usageErr{err}
	}
	if c.manager == "" || c.on == "" || c.member == "" {
		return usageErr{errors.New("--manager (or $VON_MANAGER), --on and --member are required")}
	}
	log, err := logging.New(stderr, "text", c.logLevel)
	if err != nil {
		return usageErr{err}
	}
	tls, err := c.security.Load(log, pki.KindUser)
	if err != nil {
		return usageErr{err}
	}
	cfg := sdk.Config{Manager: c.manager, TLS: tls, Insecure: tls == nil, ON: c.on, Member: c.member, Netns: c.netns, Logger: log}
	if c.keyLog != "" {
		f, err := os.OpenFile(c.keyLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--key-log: %w", err)
		}
		defer f.Close()
		cfg.KeyLog = f
	}
	v, err := sdk.Join(ctx, cfg)
	if err != nil {
		return fmt.Errorf("join %s as %s: %w", c.on, c.member, err)
	}
	defer v.Close()
	return fn(v, f)
}

func printRecv(w io.Writer, f clifmt.Format, s perf.RecvSummary) error {
	if f != clifmt.Table {
		return clifmt.Write(w, f, s)
	}
	tw := clifmt.NewTable(w)
	fmt.Fprintf(tw, "sent\t%d\n", s.Sent)
	fmt.Fprintf(tw, "delivered\t%d\n", s.Delivered)
	lossPct := 0.0
	if s.Sent > 0 {
		lossPct = 100 * float64(s.Lost) / float64(s.Sent)
	}
	fmt.Fprintf(tw, "lost\t%d (%.2f%%)\n", s.Lost, lossPct)
	fmt.Fprintf(tw, "duplicates eliminated\t%d\n", s.Duplicates)
	fmt.Fprintf(tw, "reordered\t%d\n", s.Reordered)
	fmt.Fprintf(tw, "copies on path 0 / 1\t%d / %d\n", s.PerPath["0"], s.PerPath["1"])
	fmt.Fprintf(tw, "latency p50 / p99\t%.3f / %.3f ms\n", s.P50, s.P99)
	fmt.Fprintf(tw, "epochs\t%v\n", s.Epochs)
	return tw.Flush()
}

func printSend(w io.Writer, f clifmt.Format, s perf.SendSummary) error {
	if f != clifmt.Table {
		return clifmt.Write(w, f, s)
	}
	tw := clifmt.NewTable(w)
	fmt.Fprintf(tw, "sent\t%d in %.2f s (%.0f msgs/s)\n", s.Sent, s.Seconds, s.Rate)
	fmt.Fprintf(tw, "errors\t%d %s\n", s.Errors, s.LastErr)
	fmt.Fprintf(tw, "copies per message\t%d\n", map[bool]int{true: 2, false: 1}[s.Redundant])
	fmt.Fprintf(tw, "epochs\t%v\n", s.Epochs)
	return tw.Flush()
}
