package rfsim

import (
	"net/http"
	"strconv"
)

const (
	defaultPerPage = 25
	maxPerPage     = 250
)

// Page is the body of every list and search response: Laravel's length-aware paginator.
type Page struct {
	Data  []any     `json:"data"`
	Links PageLinks `json:"links"`
	Meta  PageMeta  `json:"meta"`
}

// PageLinks are absolute URLs; Prev and Next are null at the ends.
type PageLinks struct {
	First string  `json:"first"`
	Last  string  `json:"last"`
	Prev  *string `json:"prev"`
	Next  *string `json:"next"`
}

// PageMeta is Laravel's meta block; From and To are null on an empty page.
type PageMeta struct {
	CurrentPage int    `json:"current_page"`
	From        *int   `json:"from"`
	To          *int   `json:"to"`
	PerPage     int    `json:"per_page"`
	Path        string `json:"path"`
	LastPage    int    `json:"last_page"`
	Total       int    `json:"total"`
}

// paginate slices items for the page the query asks for. per_page is clamped to 250 rather than
// rejected, and a bad page or per_page falls back to the default, as Laravel does. A page past
// the last one (however large) is empty, keeps its number in meta.current_page, and links prev
// to page-1 and next to nothing, as Laravel's paginator does. Links keep
// every query parameter so that following links.next repeats the same query (and, for search,
// the client re-POSTs the same body to it).
func (s *Server) paginate(r *http.Request, items []any) *response {
	q := r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = defaultPerPage
	}
	perPage = min(perPage, maxPerPage)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	total := len(items)
	lastPage := max(1, (total+perPage-1)/perPage)

	path := s.baseURL(r) + r.URL.Path
	link := func(n int) string {
		q.Set("page", strconv.Itoa(n))
		return path + "?" + q.Encode()
	}
	p := Page{
		Data:  []any{},
		Links: PageLinks{First: link(1), Last: link(lastPage)},
		Meta:  PageMeta{CurrentPage: page, PerPage: perPage, Path: path, LastPage: lastPage, Total: total},
	}
	// Past the last page the page is empty. Checked before multiplying: (page-1)*perPage
	// overflows for a huge page number. Within range it is at most total, so it cannot.
	if page <= lastPage {
		if start := (page - 1) * perPage; start < total {
			end := min(start+perPage, total)
			p.Data = items[start:end]
			p.Meta.From, p.Meta.To = ptr(start+1), ptr(end)
		}
	}
	if page > 1 {
		p.Links.Prev = ptr(link(page - 1))
	}
	if page < lastPage {
		p.Links.Next = ptr(link(page + 1))
	}
	return &response{status: http.StatusOK, body: p}
}
