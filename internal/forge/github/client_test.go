package github

import (
	"strings"
	"testing"
)

func TestClientOptionsCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    ClientOptions
		want string // "" when accepted
	}{
		{ClientOptions{Token: "t"}, ""},
		{ClientOptions{Anonymous: true}, ""},
		{ClientOptions{}, "no credentials"},
		{ClientOptions{Anonymous: true, Token: "t"}, "anonymous access takes no token"},
		{ClientOptions{Anonymous: true, AppID: 1, InstallationID: 2, PrivateKey: []byte("k")}, "anonymous access takes no token"},
	} {
		_, err := NewClient(tc.o)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v; want %q", tc.o, err, tc.want)
		}
	}
	if got := (ClientOptions{Anonymous: true}).LogValue().String(); !strings.Contains(got, "anonymous") {
		t.Errorf("log value %s", got)
	}
}
