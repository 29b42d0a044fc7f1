// Command vonchat is the smallest VON application: it joins a VON through the SDK,
// broadcasts every line typed on stdin to the other members and prints what they send,
// with the path the delivered copy took and the key epoch.
//
//	vonctl reserve chat --members h1,h2,h3 --rate 1Mbit --redundant
//	vonchat --manager mgr:7400 --on chat --member h1 --ca ca.crt --cert h1.crt --key h1.key  # on h1, likewise h2, h3
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"

	flag "github.com/spf13/pflag"

	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/sdk"
)

func main() {
	mgr := flag.String("manager", os.Getenv("VON_MANAGER"), "manager address host:port")
	on := flag.String("on", "", "the ON (reservation) to join")
	member := flag.String("member", "", "this member's name")
	netns := flag.String("netns", "", "network namespace for the ON socket (optional)")
	var security pki.Flags // --ca, --cert, --key (a user certificate named after the member) or --insecure
	security.Register(flag.CommandLine)
	flag.Parse()
	tls, err := security.Load(nil, pki.KindUser)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vonchat:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	v, err := sdk.Join(ctx, sdk.Config{Manager: *mgr, TLS: tls, Insecure: tls == nil, ON: *on, Member: *member, Netns: *netns})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vonchat:", err)
		os.Exit(1)
	}
	defer v.Close()
	fmt.Printf("joined %s as %s (ON id %d, redundant %v); members: ", *on, *member, v.ONID(), v.Redundant())
	for _, m := range v.Members() {
		fmt.Print(m.Name, " ")
	}
	fmt.Println()
	go func() {
		for e := range v.Events() {
			fmt.Printf("* %s %s (epoch %d)\n", e.Type, e.Member.Name, e.Epoch)
		}
	}()
	go func() {
		for {
			m, err := v.Recv(ctx)
			if err != nil {
				return
			}
			fmt.Printf("<%s> %s   [path %d, epoch %d]\n", m.From, m.Data, m.Path, m.Epoch)
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := v.Broadcast(ctx, in.Bytes()); err != nil {
			fmt.Fprintln(os.Stderr, "vonchat:", err)
		}
	}
}
