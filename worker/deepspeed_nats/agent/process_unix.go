//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// The runner gets its own process group so that signals reach the helpers
// it spawns (DeepSpeed may fork) and a Ctrl-C on the worker's terminal is
// left to the worker to handle.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func (pr *proc) signal(sig syscall.Signal) {
	select {
	case <-pr.exited:
		return // reaped: its pid (and group id) may belong to someone else now
	default:
	}
	if err := syscall.Kill(-pr.pid, sig); err != nil {
		_ = pr.cmd.Process.Signal(sig)
	}
}

func (pr *proc) terminate() { pr.signal(syscall.SIGTERM) }
func (pr *proc) kill()      { pr.signal(syscall.SIGKILL) }
