package referralfactory

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// pagedUsers serves n users, per_page at a time, with absolute links.next like Laravel. When
// lyingTotal is set, meta.total and last_page claim fewer items than exist, to prove the pager
// follows links.next and not totals.
func pagedUsers(t *testing.T, n int, lyingTotal bool) *fakeRF {
	t.Helper()
	var f *fakeRF
	f = newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		if per <= 0 {
			per = 25
		}
		pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if pg <= 0 {
			pg = 1
		}
		var items []string
		for i := (pg-1)*per + 1; i <= min(pg*per, n); i++ {
			items = append(items, fmt.Sprintf(`{"id":%d,"email":"u%d@x.io"}`, i, i))
		}
		next := "null"
		if pg*per < n {
			q := r.URL.Query()
			q.Set("page", strconv.Itoa(pg+1))
			next = strconv.Quote(f.URL + r.URL.Path + "?" + q.Encode())
		}
		total := n
		if lyingTotal {
			total = 1
		}
		writeJSON(w, 200, fmt.Sprintf(`{"data":[%s],"links":{"next":%s},"meta":{"current_page":%d,"per_page":%d,"total":%d,"last_page":1}}`,
			strings.Join(items, ","), next, pg, per, total))
	})
	return f
}

func TestPagerFollowsNextUntilEmpty(t *testing.T) {
	tests := []struct {
		name      string
		n, per    int
		wantPages int
	}{
		{"empty", 0, 0, 1},
		{"one short page", 3, 0, 1},
		{"exactly one page", 25, 0, 1},
		{"several default pages", 60, 0, 3},
		{"per page 250", 501, 250, 3},
		{"per page 2", 7, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := pagedUsers(t, tt.n, true)
			c := newClient(t, f.URL+"/api/v2")
			users, err := c.Users(ListOptions{PerPage: tt.per}).Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != tt.n {
				t.Fatalf("got %d users, want %d", len(users), tt.n)
			}
			for i, u := range users {
				if u.ID != int64(i+1) {
					t.Fatalf("user %d has id %d: order or duplicates wrong", i, u.ID)
				}
			}
			if got := len(f.requests()); got != tt.wantPages {
				t.Errorf("fetched %d pages, want %d", got, tt.wantPages)
			}
		})
	}
}

func TestPagerSearchRepostsBody(t *testing.T) {
	f := pagedUsers(t, 5, false)
	c := newClient(t, f.URL+"/api/v2")
	flt := Eq("campaign_id", 1)
	if _, err := c.Users(ListOptions{PerPage: 2, Filter: &flt}).Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("pages = %d", len(reqs))
	}
	for _, r := range reqs {
		if r.Method != "POST" || r.Path != "/api/v2/users/search" || !strings.Contains(r.Body, `"campaign_id"`) {
			t.Errorf("page request %s %s %q", r.Method, r.Path, r.Body)
		}
	}
}

func TestPagerEarlyStopAndResume(t *testing.T) {
	ctx := context.Background()
	f := pagedUsers(t, 10, false)
	c := newClient(t, f.URL+"/api/v2")
	p := c.DueRewards(MetricAmount, ListOptions{PerPage: 3})
	var seen int
	for _, err := range p.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen++
		if seen == 4 { // stop inside the second page
			break
		}
	}
	if got := len(f.requests()); got != 2 {
		t.Fatalf("fetched %d pages after breaking, want 2", got)
	}
	cursor := p.Cursor()
	if !strings.Contains(cursor, "page=3") {
		t.Fatalf("cursor = %q", cursor)
	}
	rest, err := c.DueRewards(MetricAmount, ListOptions{Cursor: cursor}).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 4 || rest[0].ID != 7 {
		t.Fatalf("resumed with %+v", rest)
	}
	if _, err := c.IssuedRewards(MetricAmount, ListOptions{Cursor: cursor}).Collect(ctx); err == nil {
		t.Error("a due-rewards cursor was accepted for the issued list")
	}
}

func TestPagerRefusesBadLinks(t *testing.T) {
	tests := []struct {
		name string
		next func(base string) string
	}{
		{"other host", func(string) string { return "https://evil.example/api/v2/users?page=2" }},
		{"other path", func(base string) string { return base + "/api/v2/campaigns?page=2" }},
		{"same page again", func(base string) string { return base + "/api/v2/users" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fakeRF
			f = newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, `{"data":[{"id":1}],"links":{"next":"`+tt.next(f.URL)+`"}}`)
			})
			c := newClient(t, f.URL+"/api/v2")
			users, err := c.Users(ListOptions{}).Collect(context.Background())
			if err == nil {
				t.Fatal("bad next link was followed")
			}
			if len(users) != 1 {
				t.Errorf("the first page's items were lost: %v", users)
			}
			if got := len(f.requests()); got != 1 {
				t.Errorf("%d requests", got)
			}
			for _, r := range f.requests() {
				if !strings.HasPrefix(r.Auth, "Bearer ") {
					t.Errorf("request without token")
				}
			}
		})
	}
}

func TestPagerPageErrorCanBeRetried(t *testing.T) {
	calls := 0
	var f *fakeRF
	f = newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch {
		case calls == 1:
			writeJSON(w, 200, `{"data":[{"id":1}],"links":{"next":"`+f.URL+`/api/v2/users?page=2"}}`)
		case calls == 2:
			writeJSON(w, 404, `{"code":404,"message":"gone"}`)
		default:
			writeJSON(w, 200, `{"data":[{"id":2}],"links":{"next":null}}`)
		}
	})
	c := newClient(t, f.URL+"/api/v2")
	p := c.Users(ListOptions{})
	ctx := context.Background()
	if _, err := p.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(ctx); !IsNotFound(err) {
		t.Fatalf("err = %v", err)
	}
	if !p.More() {
		t.Fatal("a failed page ended the listing")
	}
	items, err := p.Next(ctx)
	if err != nil || len(items) != 1 || items[0].ID != 2 || p.More() {
		t.Fatalf("items %v err %v more %v", items, err, p.More())
	}
}
