package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// cmdFlags is a subcommand's flag set with its help text.
type cmdFlags struct {
	*flag.FlagSet
	synopsis, description string
}

// newFlagSet returns a ContinueOnError flag set writing to stderr. Its -h
// help (see printHelp) shows the synopsis, the description and every flag
// with its unit and default; a bad flag prints the flag package's error
// naming the flag and a pointer to -h.
func newFlagSet(name string, stderr io.Writer, synopsis, description string) *cmdFlags {
	fs := flag.NewFlagSet("standbynic "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parse prints the help or the hint
	return &cmdFlags{fs, synopsis, description}
}

// printHelp writes the full help of fs.
func printHelp(fs *cmdFlags) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: %s %s\n\n%s\n", fs.Name(), fs.synopsis, fs.description)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nflags (durations take a unit: 500ms, 30s, 2m):\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if t, ok := f.Value.(interface{ typeName() string }); ok {
			typ = t.typeName()
		}
		fmt.Fprintf(w, "  --%s %s\n      %s", f.Name, typ, usage)
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parse parses args into fs. done is true when the caller must return code:
// after -h (0, the help printed) or a bad flag or argument (2, the error
// printed).
func parse(fs *cmdFlags, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs)
			return exitOK, true
		}
		fmt.Fprintf(fs.Output(), "Run '%s -h' for help.\n", fs.Name())
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0)), true
	}
	return 0, false
}

// usageError prints a validation error about a flag and returns exitUsage.
func usageError(fs *cmdFlags, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\nRun '%s -h' for help.\n", fs.Name(), fmt.Sprintf(format, a...), fs.Name())
	return exitUsage
}

// intFlag is an integer flag bounded to [min, max].
type intFlag struct {
	v        *int
	min, max int
}

func newIntFlag(fs *cmdFlags, name string, def, min, max int, usage string) *int {
	v := def
	fs.Var(&intFlag{&v, min, max}, name, fmt.Sprintf("%s, %d–%d", usage, min, max))
	return &v
}

func (f *intFlag) typeName() string { return "N" }

func (f *intFlag) String() string {
	if f == nil || f.v == nil {
		return "0"
	}
	return strconv.Itoa(*f.v)
}

func (f *intFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	if n < f.min || n > f.max {
		return fmt.Errorf("%d out of range %d–%d", n, f.min, f.max)
	}
	*f.v = n
	return nil
}

// probFlag is a probability in [0, 1].
type probFlag struct{ v *float64 }

func newProbFlag(fs *cmdFlags, name, usage string) *float64 {
	var v float64
	fs.Var(&probFlag{&v}, name, usage+", a probability in [0, 1]")
	return &v
}

func (f *probFlag) typeName() string { return "P" }

func (f *probFlag) String() string {
	if f == nil || f.v == nil {
		return "0"
	}
	return strconv.FormatFloat(*f.v, 'g', -1, 64)
}

func (f *probFlag) Set(s string) error {
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	if !(p >= 0 && p <= 1) {
		return fmt.Errorf("%v is not a probability in [0, 1]", s)
	}
	*f.v = p
	return nil
}

// durationFlag is a duration bounded to [min, max]; 0 is always accepted
// when zeroOK (it means "off").
type durationFlag struct {
	v        *time.Duration
	min, max time.Duration
	zeroOK   bool
}

func newDurationFlag(fs *cmdFlags, name string, def, min, max time.Duration, zeroOK bool, usage string) *time.Duration {
	v := def
	u := fmt.Sprintf("%s, %s–%s", usage, fmtDuration(min), fmtDuration(max))
	if zeroOK {
		u += " (0: off)"
	}
	fs.Var(&durationFlag{&v, min, max, zeroOK}, name, u)
	return &v
}

func (f *durationFlag) typeName() string { return "DURATION" }

func (f *durationFlag) String() string {
	if f == nil || f.v == nil {
		return "0s"
	}
	return f.v.String()
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 500ms, 30s)")
	}
	switch {
	case d == 0 && f.zeroOK:
	case d < f.min:
		return fmt.Errorf("%v below minimum %v", d, f.min)
	case d > f.max:
		return fmt.Errorf("%v above maximum %v", d, f.max)
	}
	*f.v = d
	return nil
}

// choiceFlag is one of a fixed set of words.
type choiceFlag struct {
	v       *string
	choices []string
}

func newChoiceFlag(fs *cmdFlags, name, def string, choices []string, usage string) *string {
	v := def
	fs.Var(&choiceFlag{&v, choices}, name, usage)
	return &v
}

func (f *choiceFlag) typeName() string { return strings.Join(f.choices, "|") }

func (f *choiceFlag) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	return *f.v
}

func (f *choiceFlag) Set(s string) error {
	for _, c := range f.choices {
		if s == c {
			*f.v = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(f.choices, "|"))
}

// addrsFlag collects IP addresses, one per use of the flag.
type addrsFlag struct {
	v   *[]netip.Addr
	max int
}

func (f *addrsFlag) typeName() string { return "ADDR" }

func (f *addrsFlag) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	s := make([]string, len(*f.v))
	for i, a := range *f.v {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (f *addrsFlag) Set(s string) error {
	if len(*f.v) >= f.max {
		return fmt.Errorf("more than %d addresses", f.max)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return errors.New("not an IP address")
	}
	if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("%v is not a unicast address without zone", a)
	}
	*f.v = append(*f.v, a.Unmap())
	return nil
}

// stringsFlag collects strings, one per use of the flag.
type stringsFlag struct {
	v     *[]string
	check func(string) error
}

func (f *stringsFlag) typeName() string { return "NAME" }

func (f *stringsFlag) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	return strings.Join(*f.v, ",")
}

func (f *stringsFlag) Set(s string) error {
	if err := f.check(s); err != nil {
		return err
	}
	*f.v = append(*f.v, s)
	return nil
}

// macFlag is an Ethernet MAC address.
type macFlag struct {
	v   *[6]byte
	set *bool
}

func (f *macFlag) typeName() string { return "MAC" }

func (f *macFlag) String() string {
	if f == nil || f.v == nil || !*f.set {
		return ""
	}
	return net.HardwareAddr(f.v[:]).String()
}

func (f *macFlag) Set(s string) error {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return errors.New("not a 6-byte MAC address (aa:bb:cc:dd:ee:ff)")
	}
	if hw[0]&1 != 0 || [6]byte(hw) == [6]byte{} {
		return errors.New("not a unicast MAC address")
	}
	*f.v = [6]byte(hw)
	*f.set = true
	return nil
}

// logFlags are the logging flags every daemon takes.
type logFlags struct {
	format, level *string
}

func addLogFlags(fs *cmdFlags) logFlags {
	return logFlags{
		format: newChoiceFlag(fs, "log-format", "text", []string{"text", "json"}, "log format"),
		level:  newChoiceFlag(fs, "log-level", "info", []string{"debug", "info", "warn", "error"}, "least severe level logged"),
	}
}

// logger returns the slog logger the flags ask for, writing to w.
func (l logFlags) logger(w io.Writer) *slog.Logger {
	var lv slog.Level
	switch *l.level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if *l.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
