package netlab

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name, in, wantErr string // wantErr: a substring, "" for no error
	}{
		{"plain", "demo", ""},
		{"digits and dash", "lab-2", ""},
		{"max length", strings.Repeat("a", MaxNameLen), ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("a", MaxNameLen+1), "at most 16"},
		{"upper case", "Demo", "start with a letter"},
		{"leading digit", "1lab", "start with a letter"},
		{"trailing dash", "lab-", "end with '-'"},
		{"slash", "a/b", "not allowed"},
		{"dot", "a.b", "not allowed"},
		{"space", "a b", "not allowed"},
		{"hex tag", "deadbeef", "reserved"},
		{"nine hex", "deadbeef0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckName(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckName(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
