package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
)

// auditDirName is the audit log's directory inside a home.
const auditDirName = "audit"

func (c *cli) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check and read the node's tamper-evident audit log",
		Long: `The node keeps an audit log in <home>/audit: every intent published and
received, proposal, award, commit, result, failure, policy decision and
approval, with its rationale. Each record carries the hash of the one before
it and the node key's signature, and is on disk before the action it records
is acknowledged. 'audit verify' checks the whole chain; 'audit tail' prints
the last records. Both read the files directly and work while the daemon runs.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(c.auditVerifyCmd(), c.auditTailCmd())
	return cmd
}

func (c *cli) auditVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check every record's chain hash and signature; exit 1 at the first bad one",
		Long: `verify reads the audit log from its first record to its last and checks
that the files follow each other without a gap, that every line is a
well-formed record, that the seqs run 1, 2, 3 …, that each record carries the
hash of the one before it and that each is signed by this home's node key.
It exits 0 for an intact log and otherwise names the first bad record, by
file and line, and why.

A record cut short at the very end of the log is a write a crash interrupted,
never acknowledged; verify notes it and the daemon removes it on its next
start. Records cut off the end at a line boundary cannot be told from a
shorter log.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			key, err := identity.ReadKeyFile(filepath.Join(c.home, home.KeysDir, home.NodeKey))
			if err != nil {
				return fmt.Errorf("audit verify needs the node key: %w", err)
			}
			dir := c.auditDir()
			rep, err := audit.Verify(dir, key.GetPublic())
			var verr *audit.VerifyError
			switch {
			case errors.As(err, &verr):
				return fmt.Errorf("audit log: %w", verr)
			case errors.Is(err, audit.ErrNoLog):
				return fmt.Errorf("no audit log in %s: the daemon starts one when it first runs with this home", dir)
			case err != nil:
				return err
			}
			msg := fmt.Sprintf("audit log intact: %s in %s", plural(rep.Records, "record"), plural(rep.Files, "file"))
			if rep.Records > 0 {
				msg += fmt.Sprintf(" (first %s, last %s)", stamp(rep.First), stamp(rep.Last))
			}
			if _, err := fmt.Fprintln(c.out, msg); err != nil {
				return err
			}
			if rep.TornTail {
				_, err = fmt.Fprintln(c.out, "note: the log ends in a record cut short by a crash mid-write; it was never acknowledged, and the daemon removes it on its next start")
			}
			return err
		},
	}
}

func (c *cli) auditTailCmd() *cobra.Command {
	var (
		n      int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the last records of the audit log",
		Long: `tail prints the last records of the audit log, oldest first: time (UTC),
seq, kind, task, agent and rationale, or with --json each record as the JSON
line it is stored as. It does not check signatures; 'audit verify' does.`,
		Example: `  parley audit tail -n 50
  parley audit tail --json | jq 'select(.kind == "award")'`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if n < 1 {
				return fmt.Errorf("-n %d: want 1 or more", n)
			}
			dir := c.auditDir()
			recs, err := audit.Tail(dir, n)
			var verr *audit.VerifyError
			switch {
			case errors.As(err, &verr):
				return fmt.Errorf("audit log: %w", verr)
			case errors.Is(err, audit.ErrNoLog):
				return fmt.Errorf("no audit log in %s: the daemon starts one when it first runs with this home", dir)
			case err != nil:
				return err
			}
			if asJSON {
				for _, r := range recs {
					b, err := json.Marshal(r)
					if err != nil {
						return err
					}
					if _, err := fmt.Fprintf(c.out, "%s\n", b); err != nil {
						return err
					}
				}
				return nil
			}
			if len(recs) == 0 {
				_, err := fmt.Fprintln(c.out, "the audit log is empty")
				return err
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSEQ\tKIND\tTASK\tAGENT\tRATIONALE")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n",
					stamp(r.Time), r.Seq, printable(r.Kind), printable(r.Task), printable(r.Agent), printable(r.Rationale))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many records to print")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each record as a JSON line")
	return cmd
}

func (c *cli) auditDir() string { return filepath.Join(c.home, auditDirName) }

// stamp formats an audit time: UTC, to the millisecond.
func stamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// printable keeps a field that may come from a remote peer to one line of
// text: control characters (newlines, tabs, terminal escapes) become
// spaces, and an empty field is "-".
func printable(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
