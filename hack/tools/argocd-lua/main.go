// Command argocd-lua evaluates an Argo CD resource health check (a health.lua) the way Argo CD's
// application controller does, so that tests run the script in the VM it will meet in a cluster
// rather than in a stock Lua interpreter.
//
// Usage:
//
//	argocd-lua health.lua < resources.json   # a JSON array of resources
//	argocd-lua -version
//
// It prints a JSON array with one entry per resource, in input order: {"status", "message"} as
// Argo CD would record them, or {"error"} when Argo CD would fail the health assessment. It exits
// 0 whenever every resource was evaluated, and 2 on bad usage or unreadable input.
//
// What it reproduces of Argo CD's util/lua (v3.5, gopher-lua v1.1.2, a Lua 5.1):
//   - a fresh VM per resource, without the standard libraries: a health check from argocd-cm runs
//     that way unless resource.customizations.useOpenLibs.<group>_<kind> is "true" (this
//     project's argocd-cm.yaml does not set it), so there is no string, math, io, debug or
//     coroutine library and strings have no methods;
//   - then only the package, base and table libraries opened; Argo CD's "safe os" library is
//     reachable only through require("os") and holds just time and date (its attempt to open it as
//     a global registers under the name "table", which already exists, so the global os stays nil);
//   - a one-second deadline;
//   - the resource as the global obj, decoded as the controller's unstructured objects are
//     (integers int64, other numbers float64, both Lua numbers);
//   - the result read the same way: the returned table through gopher-json into
//     {status, message}; a status outside Argo CD's health codes becomes Unknown with Argo CD's
//     message; nil, or a table of the wrong shape, is an empty status; anything else is an error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// Argo CD's messages, verbatim, so that tests can tell its outcomes apart.
const (
	invalidHealthStatus = "Lua returned an invalid health status"
	incorrectReturnType = "expect %s output from Lua script, not %s"
)

// The health codes Argo CD accepts from a script (gitops-engine's pkg/health).
var healthCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-version" {
		fmt.Printf("argocd-lua (gopher-lua %s)\n", dependencyVersion("github.com/yuin/gopher-lua"))
		return
	}
	if len(os.Args) != 2 {
		fail("usage: argocd-lua health.lua < resources.json (a JSON array), or argocd-lua -version")
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err.Error())
	}
	resources, err := readResources(os.Stdin)
	if err != nil {
		fail("reading the resources from stdin: " + err.Error())
	}
	results := make([]result, 0, len(resources))
	for _, resource := range resources {
		results = append(results, evaluate(string(script), resource))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "argocd-lua: "+message)
	os.Exit(2)
}

// dependencyVersion is the version of a module linked into this binary, from its build info.
func dependencyVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "unknown"
}

// readResources decodes a JSON array of objects with integers kept apart from other numbers, as
// k8s.io/apimachinery does for unstructured objects.
func readResources(r io.Reader) ([]map[string]any, error) {
	decoder := json.NewDecoder(r)
	decoder.UseNumber()
	var raw []map[string]any
	if err := decoder.Decode(&raw); err != nil {
		return nil, err
	}
	for i := range raw {
		raw[i] = convertNumbers(raw[i]).(map[string]any)
	}
	return raw, nil
}

func convertNumbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for key, item := range v {
			v[key] = convertNumbers(item)
		}
		return v
	case []any:
		for i, item := range v {
			v[i] = convertNumbers(item)
		}
		return v
	}
	return value
}

func evaluate(script string, resource map[string]any) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{Error: "opening " + lib.name + ": " + err.Error()}
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)

	// Argo CD sets an empty actionParams table for health checks too.
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, resource))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	if err != nil {
		// Argo CD drops the Lua stack trace of run-time errors before showing them.
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return result{Error: err.Error()}
	}
	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return result{}
	case lua.LTTable:
		encoded, err := luajson.Encode(returned)
		if err != nil {
			return result{Error: err.Error()}
		}
		var health struct {
			Status  string `json:"status,omitempty"`
			Message string `json:"message,omitempty"`
		}
		if err := json.Unmarshal(encoded, &health); err != nil {
			// Argo CD takes any type mismatch (such as an empty table, encoded as []) for no status.
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return result{}
			}
			return result{Error: err.Error()}
		}
		if !healthCodes[health.Status] {
			return result{Status: "Unknown", Message: invalidHealthStatus}
		}
		return result{Status: health.Status, Message: health.Message}
	default:
		return result{Error: fmt.Sprintf(incorrectReturnType, "table", returned.Type().String())}
	}
}

// safeOsLoader gives require("os") a table with gopher-lua's own os.time and os.date only, the
// two functions of Argo CD's safe os library (which adapts those two from gopher-lua).
func safeOsLoader(l *lua.LState) int {
	full := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer full.Close()
	full.Push(full.NewFunction(lua.OpenOs))
	full.Call(0, 1)
	osTable := full.Get(-1).(*lua.LTable)
	safe := l.NewTable()
	for _, name := range []string{"time", "date"} {
		safe.RawSetString(name, l.NewFunction(osTable.RawGetString(name).(*lua.LFunction).GFunction))
	}
	l.Push(safe)
	return 1
}

// toLua converts a decoded JSON value as Argo CD's decodeValue does: objects become hash tables,
// arrays sequences, numbers Lua numbers, null (and anything unexpected) nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		array := l.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(l, item))
		}
		return array
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}
