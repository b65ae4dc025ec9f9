package siem

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/store"
)

// The RFC 5424 formatter is written here: the format is small, and no
// well-kept Go library writes it (the maintained ones parse). The tests
// hold it to the grammar and to what rsyslog parses.

// PEN is the private enterprise number of writ's structured data element
// (SD-ID "writ@32473"): 32473 is the number RFC 5612 reserves for
// documentation and examples. writ has no number of its own; an
// organisation that wants one registers it with IANA and asks for it to be
// made configurable.
const PEN = 32473

// SDID is the structured data element every message carries: "writ@" and
// PEN.
const SDID = "writ@32473"

// Syslog facility and severities (RFC 5424 §6.2.1).
const (
	facilityLogAudit = 13
	severityNotice   = 5
	severityInfo     = 6
)

// sdParam is one structured data parameter.
type sdParam struct{ name, value string }

// header is the fixed part of the messages of one destination.
type header struct {
	hostname, appName, procID, msgID string
}

// appendMessage writes one RFC 5424 message:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID PARAM="VALUE"...] MSG
//
// The header fields must already be PRINTUSASCII (headerField); MSG is
// written as it is (MSG-ANY: no BOM, so the bytes are the entry's own).
func appendMessage(dst []byte, pri int, t time.Time, h header, sdID string, params []sdParam, msg []byte) []byte {
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(pri), 10)
	dst = append(dst, ">1 "...)
	if t.IsZero() {
		dst = append(dst, '-')
	} else {
		dst = t.UTC().AppendFormat(dst, audit.TimeLayout)
	}
	for _, f := range []string{h.hostname, h.appName, h.procID, h.msgID} {
		dst = append(dst, ' ')
		dst = append(dst, f...)
	}
	dst = append(dst, ' ', '[')
	dst = append(dst, sdID...)
	for _, p := range params {
		dst = append(dst, ' ')
		dst = append(dst, p.name...)
		dst = append(dst, '=', '"')
		dst = appendParamValue(dst, p.value)
		dst = append(dst, '"')
	}
	dst = append(dst, ']')
	if len(msg) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, msg...)
	}
	return dst
}

// appendParamValue escapes a PARAM-VALUE (RFC 5424 §6.3.3): '"', '\' and
// ']' are preceded by a backslash; everything else is written as it is
// (UTF-8).
func appendParamValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// headerField makes s a valid header field of at most max characters:
// NILVALUE ("-") when empty, other characters than PRINTUSASCII (33-126)
// replaced by '_'.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	if len(s) > max {
		s = s[:max]
	}
	if validHeaderField(s, max) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// validHeaderField reports whether s is 1 to max PRINTUSASCII characters.
func validHeaderField(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// validSDName reports whether s is an SD-NAME: 1 to 32 PRINTUSASCII
// characters except '=', ' ', ']' and '"'.
func validSDName(s string) bool {
	return validHeaderField(s, 32) && !strings.ContainsAny(s, `= ]"`)
}

// Header field limits (RFC 5424 §6).
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
)

// entrySuccess reads the top-level "success" of an entry's canonical
// bytes without decoding it: its key sorts after every key that may hold
// nested JSON (after, before, payload, subject), so its last occurrence is
// the top-level one.
func entrySuccess(b []byte) bool {
	key := []byte(`,"success":`)
	i := bytes.LastIndex(b, key)
	return i >= 0 && bytes.HasPrefix(b[i+len(key):], []byte("true"))
}

// syslogParams are the structured data of an entry: seq, chain hash and
// previous hash in hex, the event, and the signing key id and signature
// (base64), with which a SIEM can check continuity and the signature.
func syslogParams(e store.AuditEntry) []sdParam {
	return []sdParam{
		{"seq", strconv.FormatInt(e.Seq, 10)},
		{"hash", hex.EncodeToString(e.Hash)},
		{"prev", hex.EncodeToString(e.PrevHash)},
		{"event", e.Event},
		{"key", e.KeyID},
		{"sig", base64.StdEncoding.EncodeToString(e.Signature)},
	}
}

// appendEntryMessage writes an entry as one RFC 5424 message: facility
// log audit (13), severity informational for a success and notice
// otherwise, the entry's time, the SD element SDID, and the entry's
// canonical bytes as MSG.
func appendEntryMessage(dst []byte, h header, e store.AuditEntry) []byte {
	sev := severityNotice
	if entrySuccess(e.Entry) {
		sev = severityInfo
	}
	return appendMessage(dst, facilityLogAudit*8+sev, e.At, h, SDID, syslogParams(e), e.Entry)
}

// appendFrame writes msg with RFC 5425 octet-counting framing:
// MSG-LEN SP SYSLOG-MSG.
func appendFrame(dst []byte, msg []byte) []byte {
	return append(appendFrameLen(dst, len(msg)), msg...)
}

// appendFrameLen writes the MSG-LEN and space of a frame of n octets.
func appendFrameLen(dst []byte, n int) []byte {
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, ' ')
}
