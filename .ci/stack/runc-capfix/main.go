// Command runc-capfix is an OCI runtime shim for machines whose capability bounding set lacks
// capabilities that Docker asks for on privileged containers. Docker 20.10 requests every
// capability it knows; runc then fails with "unable to apply caps: operation not permitted".
// The shim drops the capabilities named in RUNC_CAPFIX_DROP (from the process spec of create,
// run and exec) and hands over to the real runc.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// globalValueFlags are runc's global flags that take a separate value argument.
var globalValueFlags = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

func main() {
	realRuntime := os.Getenv("RUNC_CAPFIX_RUNTIME")
	if realRuntime == "" {
		realRuntime = strings.TrimSpace(besideSelf(".runtime"))
	}
	if realRuntime == "" {
		fmt.Fprintln(os.Stderr, "runc-capfix: no runtime to hand over to: set RUNC_CAPFIX_RUNTIME or write its path to runc-capfix.runtime")
		os.Exit(1)
	}
	drop := dropList()
	if len(drop) > 0 {
		if err := patch(os.Args[1:], drop); err != nil {
			fmt.Fprintf(os.Stderr, "runc-capfix: %v\n", err)
			os.Exit(1)
		}
	}
	args := append([]string{realRuntime}, os.Args[1:]...)
	if err := syscall.Exec(realRuntime, args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capfix: exec %s: %v\n", realRuntime, err)
		os.Exit(1)
	}
}

// besideSelf reads the file next to this binary with the given suffix ("" when absent): the
// installer writes settings there because dockerd does not pass its environment to runtimes.
func besideSelf(suffix string) string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(self + suffix)
	if err != nil {
		return ""
	}
	return string(data)
}

// dropList reads the capabilities to remove (RUNC_CAPFIX_DROP or the .drop file).
func dropList() []string {
	raw := os.Getenv("RUNC_CAPFIX_DROP")
	if raw == "" {
		raw = besideSelf(".drop")
	}
	var caps []string
	for _, c := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		caps = append(caps, strings.ToUpper(c))
	}
	return caps
}

func patch(args []string, drop []string) error {
	command, bundle, process := "", "", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func(flag string) (string, bool) {
			if a == flag && i+1 < len(args) {
				i++
				return args[i], true
			}
			if strings.HasPrefix(a, flag+"=") {
				return strings.TrimPrefix(a, flag+"="), true
			}
			return "", false
		}
		if v, ok := value("--bundle"); ok {
			bundle = v
		} else if v, ok := value("-b"); ok {
			bundle = v
		} else if v, ok := value("--process"); ok {
			process = v
		} else if v, ok := value("-p"); ok {
			process = v
		} else if globalValueFlags[a] {
			i++ // the flag's value is not the command
		} else if command == "" && !strings.HasPrefix(a, "-") {
			command = a
		}
	}
	switch command {
	case "create", "run":
		if bundle == "" {
			bundle = "."
		}
		return rewrite(filepath.Join(bundle, "config.json"), drop, true)
	case "exec":
		if process != "" {
			return rewrite(process, drop, false)
		}
	}
	return nil
}

// rewrite edits the JSON generically so that fields this program does not know survive.
func rewrite(path string, drop []string, nested bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	proc := doc
	if nested {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		proc = p
	}
	capabilities, ok := proc["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	for set, list := range capabilities {
		items, ok := list.([]any)
		if !ok {
			continue
		}
		kept := items[:0]
		for _, item := range items {
			name, _ := item.(string)
			if !contains(drop, name) {
				kept = append(kept, item)
			}
		}
		capabilities[set] = kept
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
