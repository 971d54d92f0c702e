//go:build !unix

package agent

import "os/exec"

func setProcAttr(*exec.Cmd) {}

func (pr *proc) terminate() { _ = pr.cmd.Process.Kill() }
func (pr *proc) kill()      { _ = pr.cmd.Process.Kill() }
