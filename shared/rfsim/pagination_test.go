package rfsim_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

type page[T any] struct {
	Data  []T
	Links struct {
		First, Last string
		Prev, Next  *string
	}
	Meta struct {
		CurrentPage int `json:"current_page"`
		From        *int
		To          *int
		PerPage     int `json:"per_page"`
		Path        string
		LastPage    int `json:"last_page"`
		Total       int
	}
}

// manyUsers seeds n referrers in campaign 1.
func manyUsers(t *testing.T, n int, opts ...rfsim.Option) *rfsimtest.Sim {
	t.Helper()
	s := newSim(t, opts...)
	d := rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 1, Code: "MANY"}}}}
	for i := range n {
		d.Users = append(d.Users, rfsim.SeedUser{CampaignID: 1, FirstName: "U", Email: fmt.Sprintf("u%03d@example.com", i)})
	}
	s.MustSeed(t, d)
	return s
}

func TestPaginationFollowsNext(t *testing.T) {
	s := manyUsers(t, 60)
	var ids []int
	next := "/users?per_page=25&with=user.analytics"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("links.next never ends")
		}
		var p page[rfsim.User]
		r := s.Do(t, "GET", next, nil)
		wantStatus(t, r, 200)
		r.Decode(t, &p)
		if p.Meta.CurrentPage != pages+1 || p.Meta.PerPage != 25 || p.Meta.LastPage != 3 || p.Meta.Total != 60 {
			t.Fatalf("meta %+v", p.Meta)
		}
		if p.Meta.Path != s.URL+"/users" || !strings.HasPrefix(p.Links.First, s.URL+"/users?") {
			t.Fatalf("path %q first %q", p.Meta.Path, p.Links.First)
		}
		if *p.Meta.From != pages*25+1 || *p.Meta.To != min(60, (pages+1)*25) {
			t.Fatalf("from/to %d/%d", *p.Meta.From, *p.Meta.To)
		}
		if (p.Links.Prev == nil) != (pages == 0) {
			t.Fatalf("prev %v on page %d", p.Links.Prev, pages+1)
		}
		for _, u := range p.Data {
			if u.Analytics == nil {
				t.Fatal("with= lost on a later page")
			}
			ids = append(ids, u.ID)
		}
		next = ""
		if p.Links.Next != nil {
			next = *p.Links.Next
			u, err := url.Parse(next)
			if err != nil || !u.IsAbs() {
				t.Fatalf("links.next %q is not absolute", next)
			}
			q := u.Query()
			if q.Get("page") != fmt.Sprint(pages+2) || q.Get("per_page") != "25" || q.Get("with") != "user.analytics" {
				t.Fatalf("links.next %q lost parameters", next)
			}
		}
	}
	if len(ids) != 60 || ids[0] != 1 || ids[59] != 60 {
		t.Fatalf("collected %d ids: %v", len(ids), ids)
	}
}

func TestPaginationParameters(t *testing.T) {
	s := manyUsers(t, 260)
	tests := []struct {
		query                  string
		perPage, current, rows int
		next                   bool
	}{
		{"", 25, 1, 25, true},
		{"?per_page=1000", 250, 1, 250, true},
		{"?per_page=0", 25, 1, 25, true},
		{"?per_page=-3", 25, 1, 25, true},
		{"?per_page=abc", 25, 1, 25, true},
		{"?page=abc", 25, 1, 25, true},
		{"?page=0", 25, 1, 25, true},
		{"?per_page=250&page=2", 250, 2, 10, false},
		{"?page=99", 25, 99, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var p page[map[string]any]
			s.Do(t, "GET", "/users"+tt.query, nil).Decode(t, &p)
			if p.Meta.PerPage != tt.perPage || p.Meta.CurrentPage != tt.current || len(p.Data) != tt.rows || (p.Links.Next != nil) != tt.next {
				t.Fatalf("per_page %d page %d rows %d next %v", p.Meta.PerPage, p.Meta.CurrentPage, len(p.Data), p.Links.Next)
			}
			if tt.rows == 0 && (p.Meta.From != nil || p.Meta.To != nil || p.Data == nil) {
				t.Fatalf("empty page meta %+v data %v", p.Meta, p.Data)
			}
		})
	}
}

func TestPaginationBaseURL(t *testing.T) {
	t.Run("option", func(t *testing.T) {
		s := manyUsers(t, 30, rfsim.WithBaseURL("https://rf.example.test/"))
		var p page[map[string]any]
		s.Do(t, "GET", "/users", nil).Decode(t, &p)
		if *p.Links.Next != "https://rf.example.test/api/v2/users?page=2" {
			t.Fatalf("next %q", *p.Links.Next)
		}
	})
	t.Run("forwarded headers", func(t *testing.T) {
		s := manyUsers(t, 30)
		h := http.Header{"Authorization": {"Bearer " + s.Token}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"sim.example.test"}}
		var p page[map[string]any]
		s.DoRaw(t, "GET", s.URL+"/users", nil, h).Decode(t, &p)
		if *p.Links.Next != "https://sim.example.test/api/v2/users?page=2" || p.Links.Last != "https://sim.example.test/api/v2/users?page=2" {
			t.Fatalf("links %+v", p.Links)
		}
	})
}

func TestSearchPaginates(t *testing.T) {
	s := manyUsers(t, 60)
	body := map[string]any{"filters": map[string]any{"operator": "AND", "value": []any{
		map[string]any{"field": "email", "operator": "like", "value": "u0%"}, // u000..u059
		map[string]any{"field": "id", "operator": ">", "value": 10},
	}}}
	var ids []int
	next := "/users/search?per_page=20"
	for next != "" {
		var p page[rfsim.User]
		r := s.Do(t, "POST", next, body) // clients re-POST the same body to links.next
		wantStatus(t, r, 200)
		r.Decode(t, &p)
		for _, u := range p.Data {
			ids = append(ids, u.ID)
		}
		next = ""
		if p.Links.Next != nil {
			next = *p.Links.Next
			if !strings.HasPrefix(next, s.URL+"/users/search?") {
				t.Fatalf("links.next %q is not the search URL", next)
			}
		}
	}
	if len(ids) != 50 || ids[0] != 11 {
		t.Fatalf("search returned %d users from %v", len(ids), ids[:1])
	}
}

// A page past the end is empty however large its number: (page-1)*per_page must not overflow
// into a negative slice index.
func TestPaginationPastTheEnd(t *testing.T) {
	s := manyUsers(t, 30) // two pages of 25
	for _, n := range []int{3, 368934881474191035} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := s.Do(t, "GET", fmt.Sprintf("/users?page=%d&per_page=25", n), nil)
			wantStatus(t, r, 200)
			var p page[map[string]any]
			r.Decode(t, &p)
			if p.Data == nil || len(p.Data) != 0 || p.Meta.From != nil || p.Meta.To != nil {
				t.Fatalf("data %v from %v to %v", p.Data, p.Meta.From, p.Meta.To)
			}
			if p.Meta.CurrentPage != n || p.Meta.LastPage != 2 || p.Meta.Total != 30 || p.Meta.PerPage != 25 {
				t.Fatalf("meta %+v", p.Meta)
			}
			if p.Links.Next != nil || p.Links.Prev == nil || !strings.Contains(*p.Links.Prev, fmt.Sprintf("page=%d&", n-1)) ||
				!strings.Contains(p.Links.Last, "page=2&") || !strings.Contains(p.Links.First, "page=1&") {
				t.Fatalf("links %+v prev %v", p.Links, *p.Links.Prev)
			}
		})
	}
	// Search pages the same way.
	r := s.Do(t, "POST", "/users/search?page=368934881474191035", map[string]any{})
	wantStatus(t, r, 200)
	var p page[map[string]any]
	r.Decode(t, &p)
	if len(p.Data) != 0 || p.Meta.Total != 30 {
		t.Fatalf("search past the end: %s", r.Body)
	}
}
