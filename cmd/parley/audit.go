package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/parleynet/parley/audit"
	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/identity"
)

const (
	// nodePubFile, in a log directory kept by 'init --force', holds the
	// PeerID of the node key that signed that log (home writes it).
	nodePubFile = "node.pub"
)

func (c *cli) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check, read and prune the node's tamper-evident audit log",
		Long: `The node keeps an audit log in <home>/audit: every intent published and
received, proposal, award, commit, result, failure, policy decision and
approval, with its rationale. Each record carries the hash of the one before
it; each commit group of records ends with one signed by the node key, and
every acknowledged action's record is on disk, under a signature, before the
action is acknowledged. Signed checkpoints (Merkle tree heads, in the log and
in checkpoint.json) fix how long the log was, so records cut off its end are
noticed and old files can be pruned.

'audit verify' checks the whole log; 'audit tail' prints the last records;
'audit prune' removes old files. They read the files directly and work while
the daemon runs. --dir points them at another log directory, such as the
audit.replaced-<time> that 'init --force' keeps.`,
		Example: `  parley audit verify
  parley audit tail -n 20
  parley audit prune --keep-files 10`,
		RunE: groupRun,
	}
	cmd.AddCommand(c.auditVerifyCmd(), c.auditTailCmd(), c.auditPruneCmd())
	return cmd
}

// auditTarget is the log directory and key flags verify and prune share.
type auditTarget struct {
	dir    string
	pubkey string
}

func (a *auditTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.dir, "dir", "", "the log directory (default <home>/audit)")
	cmd.Flags().StringVar(&a.pubkey, "pubkey", "", "the PeerID of the node key that signed the log (default: DIR/node.pub if present, else the home's node key)")
}

// resolve returns the log directory, which must exist, and the public key
// to check it with, with a phrase saying where the key came from.
func (a *auditTarget) resolve(c *cli) (dir string, pub crypto.PubKey, from string, err error) {
	dir = a.dir
	if dir == "" {
		// The home's log: its key first, as a home without one has no log.
		dir = c.auditDir()
		if a.pubkey == "" {
			if pub, from, err = c.homeKey(dir); err != nil {
				return "", nil, "", err
			}
		}
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && a.dir == "":
		return "", nil, "", fmt.Errorf("no audit log in %s: the daemon starts one when it first runs with this home", dir)
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, "", fmt.Errorf("--dir %s: no such directory", dir)
	case err != nil:
		return "", nil, "", err
	case !st.IsDir():
		return "", nil, "", fmt.Errorf("--dir %s: not a directory", dir)
	}
	if a.pubkey != "" {
		pub, err := pubKeyOfPeerID(a.pubkey)
		if err != nil {
			return "", nil, "", fmt.Errorf("--pubkey %q: %w", a.pubkey, err)
		}
		return dir, pub, "--pubkey " + a.pubkey, nil
	}
	if a.dir != "" {
		path := filepath.Join(dir, nodePubFile)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			s := strings.TrimSpace(string(b))
			pub, err := pubKeyOfPeerID(s)
			if err != nil {
				return "", nil, "", fmt.Errorf("%s: %w", path, err)
			}
			return dir, pub, fmt.Sprintf("node %s from %s", s, path), nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", nil, "", err
		}
	}
	if pub == nil {
		if pub, from, err = c.homeKey(dir); err != nil {
			return "", nil, "", err
		}
	}
	return dir, pub, from, nil
}

// homeKey is the home's node key, for the log in dir.
func (c *cli) homeKey(dir string) (crypto.PubKey, string, error) {
	key, err := identity.ReadKeyFile(filepath.Join(c.home, home.KeysDir, home.NodeKey))
	if err != nil {
		return nil, "", fmt.Errorf("audit of %s needs the node key (or --pubkey): %w", dir, err)
	}
	from := "this home's node key"
	if id, err := peer.IDFromPrivateKey(key); err == nil {
		from = fmt.Sprintf("this home's node key (%s)", id)
	}
	return key.GetPublic(), from, nil
}

// pubKeyOfPeerID returns the key an ed25519 PeerID embeds.
func pubKeyOfPeerID(s string) (crypto.PubKey, error) {
	id, err := peer.Decode(s)
	if err != nil {
		return nil, fmt.Errorf("not a PeerID: %v", err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("the PeerID does not embed its public key (node keys are ed25519, whose PeerIDs do): %v", err)
	}
	return pub, nil
}

// auditError turns an error of Verify, Tail or Prune into one line for dir.
func auditError(err error, dir, keyFrom string) error {
	var verr *audit.VerifyError
	switch {
	case errors.Is(err, audit.ErrKeyMismatch):
		return fmt.Errorf("audit log in %s is not signed by %s: %w", dir, keyFrom, verr0(err))
	case errors.As(err, &verr):
		return fmt.Errorf("audit log: %w", verr)
	case errors.Is(err, audit.ErrNoLog):
		return fmt.Errorf("no audit log in %s: it holds no audit-*.jsonl files", dir)
	}
	return err
}

// verr0 is the *VerifyError in err, or err.
func verr0(err error) error {
	var verr *audit.VerifyError
	if errors.As(err, &verr) {
		return verr
	}
	return err
}

func (c *cli) auditVerifyCmd() *cobra.Command {
	var t auditTarget
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every record's chain hash, signature and checkpoint; exit 1 at the first bad one",
		Long: `verify reads the audit log from its first record to its last and checks
that the files follow each other without a gap, that every line is a
well-formed record, that the seqs run on by one, that each record carries the
hash of the one before it, that every signature verifies with the node key,
and that the records give the Merkle tree hash the latest signed checkpoint
(checkpoint.json) and each checkpoint record state. It exits 0 for an intact
log, printing what it proved, and otherwise exits 1 naming the first bad
record, by file and line, and why, or the records missing from the end.

A log pruned by 'audit prune' starts after its first file; anchor.json keeps
what verify needs to prove the rest against the checkpoint. Records cut
short or left unsigned at the very end are a commit group a crash
interrupted, never acknowledged; verify notes them and the daemon removes
them on its next start. Records written after the latest checkpoint (at most
one checkpoint's worth) could be cut off unnoticed.

With --dir, verify checks another log directory, such as the
audit.replaced-<time> that 'init --force' keeps, with the key named in its
node.pub, or with --pubkey.`,
		Example: `  parley audit verify
  parley audit verify --dir ~/.parley/audit.replaced-1767225600`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, pub, from, err := t.resolve(c)
			if err != nil {
				return err
			}
			rep, err := audit.Verify(dir, pub)
			if err != nil {
				return auditError(err, dir, from)
			}
			return c.printReport(rep, dir, from)
		},
	}
	t.flags(cmd)
	return cmd
}

// printReport says what Verify proved.
func (c *cli) printReport(rep audit.Report, dir, from string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "audit log intact: %s", plural(rep.Records, "record"))
	if rep.Pruned > 0 && rep.Records > 0 {
		fmt.Fprintf(&b, " (seq %d-%d)", rep.Pruned+1, rep.Pruned+uint64(rep.Records))
	}
	fmt.Fprintf(&b, " in %s", plural(rep.Files, "file"))
	if rep.Records > 0 {
		fmt.Fprintf(&b, " (first %s, last %s)", stamp(rep.First), stamp(rep.Last))
	}
	fmt.Fprintf(&b, "\nlog: %s\nkey: %s\n", dir, from)
	switch cp := rep.Checkpoint; {
	case cp == nil:
		b.WriteString("checkpoint: none (a log from before checkpoints): records cut off its end cannot be detected; the daemon writes one when it next opens the log\n")
	default:
		where := "checkpoint record"
		if cp.Sidecar {
			where = audit.SidecarFile
		}
		fmt.Fprintf(&b, "checkpoint: %s, signed %s (%s); the log reaches it\n", plural(int(cp.Size), "record"), stamp(cp.Time), where)
	}
	if rep.Pruned > 0 {
		fmt.Fprintf(&b, "pruned: records 1-%d in %s, the last of %s, removed; the rest is proven against the checkpoint through %s\n",
			rep.Pruned, plural(rep.PrunedFiles, "file"), stamp(rep.PrunedLast), audit.AnchorFile)
	}
	if rep.Stale > 0 {
		fmt.Fprintf(&b, "note: %s left below the pruned prefix by an interrupted prune, not verified; 'audit prune' removes them\n", plural(rep.Stale, "file"))
	}
	if rep.Unsigned > 0 || rep.TornTail {
		fmt.Fprintf(&b, "note: the log ends in an unfinished commit group (%s", plural(rep.Unsigned, "complete record"))
		if rep.TornTail {
			b.WriteString(" and a record cut short")
		}
		b.WriteString("), left by a crash mid-write: never acknowledged, not counted, and the daemon removes it on its next start\n")
	}
	_, err := fmt.Fprint(c.out, b.String())
	return err
}

func (c *cli) auditPruneCmd() *cobra.Command {
	var (
		t      auditTarget
		keep   int
		before string
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the oldest audit files, keeping the log verifiable",
		Long: `prune removes the oldest files of the audit log: all but the newest
--keep-files, or those whose records are all older than --before, or with
both, those that neither keeps. It first verifies the whole log and removes
nothing from one that fails. It never removes the file being written, nor
files with records that the latest checkpoint does not cover yet. It writes
anchor.json, with the hashes at the cut, before removing anything, so that
'audit verify' still proves every record kept against the signed checkpoint.
It works while the daemon runs.`,
		Example: `  parley audit prune --keep-files 10
  parley audit prune --before 2026-01-01`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			opts := audit.PruneOptions{KeepFiles: keep}
			if keep < 0 {
				return fmt.Errorf("--keep-files %d: want 1 or more", keep)
			}
			if before != "" {
				tm, err := parseDate(before)
				if err != nil {
					return fmt.Errorf("--before %q: want a date (2006-01-02) or an RFC 3339 time", before)
				}
				opts.Before = tm
			}
			if keep == 0 && before == "" {
				return errors.New("say what to keep: --keep-files N, --before DATE, or both")
			}
			dir, pub, from, err := t.resolve(c)
			if err != nil {
				return err
			}
			pr, err := audit.Prune(dir, pub, opts)
			switch {
			case errors.Is(err, audit.ErrNoCheckpoint):
				return fmt.Errorf("audit log in %s has no checkpoint yet, so nothing can be pruned: run the daemon once with this version (it writes one)", dir)
			case errors.Is(err, audit.ErrLocked):
				return fmt.Errorf("another 'audit prune' is running on %s", dir)
			case errors.As(err, new(*audit.VerifyError)):
				// Prune verifies first and removes nothing from a bad log.
				return fmt.Errorf("nothing was pruned: %w", auditError(err, dir, from))
			case err != nil:
				return auditError(err, dir, from)
			}
			if pr.Files == 0 {
				if _, err := fmt.Fprintln(c.out, "nothing to prune: every file is kept by the options, is the file being written, or holds records the latest checkpoint does not cover yet"); err != nil {
					return err
				}
			} else if _, err := fmt.Fprintf(c.out, "pruned %s (%s); the log now starts at audit file %d, seq %d\n",
				plural(pr.Files, "file"), plural(int(pr.Records), "record"), pr.FirstFile, pr.Pruned+1); err != nil {
				return err
			}
			rep, err := audit.Verify(dir, pub)
			if err != nil {
				return auditError(err, dir, from)
			}
			return c.printReport(rep, dir, from)
		},
	}
	t.flags(cmd)
	cmd.Flags().IntVar(&keep, "keep-files", 0, "keep the newest N files")
	cmd.Flags().StringVar(&before, "before", "", "keep files with a record at or after this date or time (UTC dates)")
	return cmd
}

// parseDate reads a date (UTC midnight) or an RFC 3339 time.
func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

func (c *cli) auditTailCmd() *cobra.Command {
	var (
		n      int
		asJSON bool
		dir    string
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
			if dir == "" {
				dir = c.auditDir()
			}
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
	cmd.Flags().StringVar(&dir, "dir", "", "the log directory (default <home>/audit)")
	return cmd
}

func (c *cli) auditDir() string { return filepath.Join(c.home, home.AuditDir) }

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
