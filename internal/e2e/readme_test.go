package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testutil"
)

// The README test: every ```sh block of README.md runs as a new user runs
// it, from the repository root, against a real `inferq dev`.
//
//   - The binaries are built once; `go run ./cmd/X` and `go run ./worker/X`
//     become the built binary, so no block recompiles anything.
//   - `inferq dev` runs on free ports; 127.0.0.1:8080 and 127.0.0.1:4222 in
//     the blocks are rewritten to them, and INFERQ_URL / INFERQ_NATS_URL
//     point the CLI's defaults there too.
//   - The blocks run in README order, each in its own bash with
//     `set -uo pipefail`; every command runs, and each one that fails is
//     reported with its README line. Shell variables a block assigns
//     (ID=$(...)) are carried to the blocks after it, as in the reader's
//     one terminal.
//   - `curl` is a shell function that runs the real curl with -D to read the
//     status of every answer: a block fails on any status but 2xx, unless
//     the README says which status to expect with a trailing `# -> NNN`
//     comment on the line where that curl starts (then it must be exactly
//     NNN).
//   - Lines that run the optional `nats` CLI, or install it with
//     `go install`, are skipped: the README offers that tool, it does not
//     require it.
//   - The set-up blocks (`go run ./cmd/inferq dev`, `make test`) are what
//     this test and its runner already do, and are not run again.
//   - The "Running the services apart" block is run for real: each line's
//     service starts against the dev stack's NATS (its --listen or --admin
//     address moved to a free port), must become ready (/readyz 200), and
//     must stop cleanly on SIGTERM.

// readmeBlock is one ```sh block: its first line number and its lines.
type readmeBlock struct {
	line  int
	lines []string
}

func (b readmeBlock) text() string { return strings.Join(b.lines, "\n") }

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []readmeBlock
	var cur *readmeBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &readmeBlock{line: n + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README.md: the ```sh block at line %d is not closed", cur.line)
	}
	return out
}

var (
	expectRE   = regexp.MustCompile(`#\s*->\s*(\d{3})\b`)
	assignRE   = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)=`)
	goRunRE    = regexp.MustCompile(`go run \./(?:cmd|worker)/([A-Za-z0-9_]+)`)
	optionalRE = regexp.MustCompile(`^\s*(nats\s|go install\s)`)
)

// readmePreamble is the shell every block runs in; see the package comment
// above TestReadmeCommands.
// Every command of a block runs even after one fails, so that one run shows
// every failure; the ERR trap notes each and the block exits 1 at the end.
const readmePreamble = `set -uo pipefail
README_FAILED=0
trap 'echo "README test: the command at README line $((LINENO + README_LINE_OFFSET)) failed (exit $?)" >&2; README_FAILED=1' ERR
if [ -f "$README_STATE" ]; then source "$README_STATE"; fi
inferq() { "$INFERQ_BIN/inferq" "$@"; }
curl() {
  local hdr rc code want="${INFERQ_EXPECT:-}"
  hdr=$(mktemp)
  command curl -D "$hdr" "$@" && rc=0 || rc=$?
  code=$(awk '/^HTTP\//{c=$2} END{print c}' "$hdr")
  rm -f "$hdr"
  printf '%s\t%s\tcurl %s\n' "${code:-none}" "${want:-2xx}" "$*" >>"$README_HTTP_LOG"
  if [ "$rc" -ne 0 ]; then
    echo "README test: curl $* failed with exit code $rc (HTTP ${code:-none})" >&2
    return "$rc"
  fi
  if [ -n "$want" ]; then
    if [ "$code" = "$want" ]; then return 0; fi
  else
    case "$code" in 2??) return 0 ;; esac
  fi
  echo "README test: curl $* answered HTTP $code; the README expects ${want:-2xx}" >&2
  return 22
}
`

// TestReadmeCommands runs every command block of README.md against a real
// `inferq dev` and fails on any HTTP answer the README does not expect.
func TestReadmeCommands(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(repo, "README.md"))
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d ```sh blocks; the test expected the set-up, first-job and API blocks", len(blocks))
	}
	inferqBin := binary(t, "inferq")
	binDir := filepath.Dir(inferqBin)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	natsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	natsPort := natsAddr[strings.LastIndex(natsAddr, ":")+1:]
	dev := start(t, inferqBin, nil, "dev", "--http", addr, "--nats-port", natsPort, "--data", t.TempDir())
	waitHTTP(t, dev, "http://"+addr+"/readyz")

	tmp := t.TempDir()
	state := filepath.Join(tmp, "state.sh")
	httpLog := filepath.Join(tmp, "http.log")
	env := append(os.Environ(),
		"INFERQ_BIN="+binDir, "README_STATE="+state, "README_HTTP_LOG="+httpLog,
		"INFERQ_URL=http://"+addr, "INFERQ_NATS_URL=nats://"+natsAddr)
	rewrite := func(s string) string {
		s = strings.ReplaceAll(s, "127.0.0.1:8080", addr)
		s = strings.ReplaceAll(s, "127.0.0.1:4222", natsAddr)
		return goRunRE.ReplaceAllString(s, `"$$INFERQ_BIN/$1"`)
	}

	ran := 0
	for _, b := range blocks {
		name := fmt.Sprintf("README_line_%d", b.line)
		text := strings.TrimSpace(b.text())
		switch {
		case text == "go run ./cmd/inferq dev" || text == "make test":
			t.Logf("README line %d: set-up block %q not run again (this test runs inferq dev itself)", b.line, text)
			continue
		case strings.Contains(text, "./cmd/ingress"):
			ran++
			t.Run(name+"_services", func(t *testing.T) { runServicesBlock(t, repo, binDir, natsAddr, b) })
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) {
			script, vars := readmeScript(t, b, rewrite)
			for _, v := range vars {
				script += fmt.Sprintf("\ndeclare -p %s >>\"$README_STATE\" 2>/dev/null || true", v)
			}
			script += "\nexit $README_FAILED\n"
			offset := b.line - strings.Count(readmePreamble, "\n") - 1
			before := logLines(httpLog)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", readmePreamble+script)
			cmd.Dir, cmd.Env = repo, append(env, fmt.Sprintf("README_LINE_OFFSET=%d", offset))
			// Kill the whole group (a streaming curl too) when the block times out.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			calls := logLines(httpLog)[len(before):]
			if err != nil {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					err = fmt.Errorf("still running after 90s: %w", err)
				}
				t.Errorf("README.md block at line %d failed: %v\n--- block ---\n%s\n--- HTTP calls (status, expected, command) ---\n%s\n--- output ---\n%s",
					b.line, err, b.text(), strings.Join(calls, "\n"), out)
				return
			}
			t.Logf("README line %d ran:\n%s", b.line, strings.Join(calls, "\n"))
		})
	}
	if ran == 0 {
		t.Fatal("no README block was run")
	}
}

// readmeScript turns a block into the script to run: optional-tool lines
// blanked, `# -> NNN` turned into the expectation of that line's curl, and
// addresses and `go run` rewritten. It returns the variables the block sets.
func readmeScript(t *testing.T, b readmeBlock, rewrite func(string) string) (string, []string) {
	t.Helper()
	var lines, vars []string
	seen := map[string]bool{}
	for k, line := range b.lines {
		n := b.line + k
		continued := k > 0 && strings.HasSuffix(strings.TrimSpace(b.lines[k-1]), `\`)
		if optionalRE.MatchString(line) && !continued {
			if strings.HasSuffix(strings.TrimSpace(line), `\`) {
				t.Fatalf("README line %d: an optional-tool line must be one line, to be skipped alone: %s", n, line)
			}
			t.Logf("README line %d skipped (optional tool, not installed by the tests): %s", n, strings.TrimSpace(line))
			lines = append(lines, "")
			continue
		}
		if m := assignRE.FindStringSubmatch(line); m != nil && !continued && !seen[m[1]] {
			seen[m[1]] = true
			vars = append(vars, m[1])
		}
		if m := expectRE.FindStringSubmatchIndex(line); m != nil {
			want := line[m[2]:m[3]]
			i := strings.Index(line[:m[0]], "curl ")
			if i < 0 {
				t.Fatalf("README line %d: %q must be on the line where its curl starts: %s", n, line[m[0]:m[1]], line)
			}
			line = line[:i] + "INFERQ_EXPECT=" + want + " " + line[i:]
		}
		lines = append(lines, rewrite(line))
	}
	return strings.Join(lines, "\n"), vars
}

// runServicesBlock starts each service line of "Running the services apart"
// against the dev stack's NATS, waits until it is ready and stops it.
func runServicesBlock(t *testing.T, repo, binDir, natsAddr string, b readmeBlock) {
	for k, line := range b.lines {
		n := b.line + k
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.ContainsAny(line, `'"\$`) {
			t.Fatalf("README line %d: the services block must be plain words (no quotes or variables): %s", n, line)
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "go" || f[1] != "run" {
			t.Fatalf("README line %d: want `go run ./<service> flags...`, got: %s", n, line)
		}
		bin := filepath.Join(binDir, filepath.Base(f[2]))
		args := f[3:]
		probe := ""
		for i := 0; i < len(args); i++ {
			args[i] = strings.ReplaceAll(args[i], "127.0.0.1:4222", natsAddr)
			if (args[i] == "--listen" || args[i] == "--admin") && i+1 < len(args) {
				probe = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
				args[i+1] = probe
				i++
			}
		}
		if probe == "" {
			t.Fatalf("README line %d: no --listen or --admin address to check the service on: %s", n, line)
		}
		t.Run(filepath.Base(f[2]), func(t *testing.T) {
			p := &proc{cmd: exec.Command(bin, args...), out: &testutil.Buffer{}, done: make(chan error, 1)}
			p.cmd.Dir = repo
			p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
			if err := p.cmd.Start(); err != nil {
				t.Fatalf("README line %d: %v", n, err)
			}
			go func() { p.done <- p.cmd.Wait() }()
			t.Cleanup(func() { _ = p.cmd.Process.Kill() })
			t.Logf("README line %d: %s %s", n, filepath.Base(bin), strings.Join(args, " "))
			waitHTTP(t, p, "http://"+probe+"/readyz")
			p.stop(t, syscall.SIGTERM)
		})
	}
}

// logLines reads the HTTP log the curl function appends to.
func logLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}
