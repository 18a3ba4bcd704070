// Command go-publisher posts CloudEvents to the Personal-Data Ledger's POST /events,
// using only Go's standard library: the worked example of docs/ingest.md.
//
// It sends one batch (application/cloudevents-batch+json) of fictitious events from its
// source: a registration and a collection carrying clear values in data.personal (the
// ledger seals them), and a use. Each event has its own id, kept across retries, so a
// retried request stores nothing twice. With PDL_INTERVAL > 0 it keeps publishing (the
// docker-compose example service).
//
// Settings (environment):
//
//	PDL_URL         the API (default http://127.0.0.1:8080)
//	PDL_TOKEN       a publisher token, or PDL_TOKEN_FILE: a file holding one
//	PDL_SOURCE      the event source registered to the token's principal (default svc/example-shop)
//	PDL_PEOPLE      people per batch (default 1; three events each)
//	PDL_INTERVAL    seconds between batches; 0 (the default) sends one batch and exits
//	PDL_SHOW        1: print each request (token elided) to standard error
//
// Exit status: 0 when every batch was taken, 1 otherwise (the answer is printed).
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Event is a CloudEvents 1.0 event in the ledger's wire form (see /schemas).
type Event struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Time        string         `json:"time"`
	Subject     string         `json:"subject,omitempty"`
	Data        map[string]any `json:"data"`
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// uuid7 is a time-ordered UUID (RFC 9562), as the ledger derives for id-less events.
func uuid7(t time.Time) string {
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err)
	}
	binary.BigEndian.PutUint64(b[0:8], uint64(t.UnixMilli())<<16|uint64(b[6])<<8|uint64(b[7]))
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func batch(source string, people int, now time.Time) []Event {
	var events []Event
	for i := 0; i < people; i++ {
		account := fmt.Sprintf("acct:go-%d-%d", now.Unix(), i)
		email := fmt.Sprintf("go.%d.%d@example.invalid", now.Unix(), i)
		at := now.UTC().Format(time.RFC3339Nano)
		event := func(kind string, data map[string]any) Event {
			return Event{SpecVersion: "1.0", ID: uuid7(now), Source: source, Type: kind,
				Time: at, Subject: account, Data: data}
		}
		events = append(events,
			event("subject.registered", map[string]any{"subject_kind": "user", "channel": "app"}),
			event("data.collected", map[string]any{
				"categories": []string{"user.contact.email"},
				"source":     map[string]any{"kind": "subject"},
				"purpose":    "essential.service.authentication",
				"store":      "accounts-db", "store_location": "CN",
				"personal": map[string]string{"user.contact.email": email},
			}),
			event("data.used", map[string]any{
				"categories": []string{"user.contact.email"},
				"purpose":    "essential.service.notifications", "system": "mailer",
			}),
		)
	}
	return events
}

// publish posts one batch, retrying (with the same body: the ids make it safe) when the
// ledger is briefly unavailable. It returns the HTTP status and the answer's body.
func publish(client *http.Client, url, token string, body []byte) (int, []byte, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		req, err := http.NewRequest(http.MethodPost, url+"/events", bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		if os.Getenv("PDL_SHOW") == "1" && attempt == 0 {
			var pretty bytes.Buffer
			_ = json.Indent(&pretty, body, "", "  ")
			fmt.Fprintf(os.Stderr, "POST %s/events\nAuthorization: Bearer pdl_...\n"+
				"Content-Type: application/cloudevents-batch+json\n\n%s\n", url, pretty.Bytes())
		}
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = fmt.Errorf("503: %s", answer)
			continue
		}
		return resp.StatusCode, answer, nil
	}
	return 0, nil, lastErr
}

func main() {
	url := strings.TrimRight(env("PDL_URL", "http://127.0.0.1:8080"), "/")
	token := os.Getenv("PDL_TOKEN")
	if file := os.Getenv("PDL_TOKEN_FILE"); token == "" && file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "PDL_TOKEN_FILE:", err)
			os.Exit(1)
		}
		token = strings.TrimSpace(string(raw))
	}
	if token == "" {
		fmt.Fprintln(os.Stderr, "set PDL_TOKEN or PDL_TOKEN_FILE (a publisher token: pdl token issue NAME)")
		os.Exit(1)
	}
	source := env("PDL_SOURCE", "svc/example-shop")
	people, err := strconv.Atoi(env("PDL_PEOPLE", "1"))
	if err != nil || people < 1 {
		fmt.Fprintln(os.Stderr, "PDL_PEOPLE must be a whole number of at least 1")
		os.Exit(1)
	}
	interval, err := strconv.Atoi(env("PDL_INTERVAL", "0"))
	if err != nil || interval < 0 {
		fmt.Fprintln(os.Stderr, "PDL_INTERVAL must be a whole number of seconds (0: once)")
		os.Exit(1)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	for {
		body, err := json.Marshal(batch(source, people, time.Now()))
		if err != nil {
			panic(err)
		}
		status, answer, err := publish(client, url, token, body)
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "publishing failed:", err)
		case status != http.StatusOK:
			fmt.Fprintf(os.Stderr, "refused (%d): %s\n", status, answer)
		default:
			fmt.Printf("%s\n", answer)
		}
		if interval == 0 {
			if err != nil || status != http.StatusOK {
				os.Exit(1)
			}
			return
		}
		time.Sleep(time.Duration(interval) * time.Second)
	}
}
