package referralfactory

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
	"strings"
)

// MaxPerPage is the largest page RF serves.
const MaxPerPage = 250

// ListOptions shapes a list or search call.
type ListOptions struct {
	// PerPage is the page size, 1..250 (RF's default 25 when zero).
	PerPage int
	// Filter turns the list into a search (POST .../search with this filter).
	Filter *Filter
	// With asks for relations, e.g. "user.analytics".
	With []string
	// Cursor resumes a listing where an earlier Pager stopped (its Cursor()).
	Cursor string
}

// page is RF's list envelope. Only links.next is trusted: totals and last_page are not
// documented, so the pager never depends on them.
type page[T any] struct {
	Data  []T `json:"data"`
	Links struct {
		Next string `json:"next"`
	} `json:"links"`
	// NextPageURL is Laravel's non-resource paginator field, accepted in case RF uses it.
	NextPageURL string `json:"next_page_url"`
}

// Pager walks a paginated list by following links.next until it is empty. RF pages by
// offset, so changing the collection while walking it (issuing due rewards, say) shifts the
// later pages: collect first, or start again from the first page.
type Pager[T any] struct {
	c      *Client
	method string
	body   any
	next   string
	prefix string // the path every page must stay on
	err    error
}

func newPager[T any](c *Client, path string, opts ListOptions) *Pager[T] {
	p := &Pager[T]{c: c, method: "GET", prefix: path}
	if opts.Filter != nil {
		p.method, p.body = "POST", searchBody{Filters: opts.Filter.group()}
		path += "/search"
		p.prefix = path
	}
	if opts.Cursor != "" {
		u, err := c.resolve(opts.Cursor, nil)
		switch {
		case err != nil:
			p.err = fmt.Errorf("resume %s: %w", path, err)
		case c.relPath(u) != path:
			p.err = fmt.Errorf("resume %s: %w: cursor is for %s", path, ErrInvalidInput, c.relPath(u))
		default:
			p.next = u.String()
		}
		return p
	}
	q := url.Values{}
	if opts.PerPage > 0 {
		q.Set("per_page", strconv.Itoa(min(opts.PerPage, MaxPerPage)))
	}
	if len(opts.With) > 0 {
		q.Set("with", strings.Join(opts.With, ","))
	}
	u, _ := c.resolve(path, q) // a relative path always resolves
	p.next = u.String()
	return p
}

// More reports whether Next has something to return: another page, or the error that stopped
// the listing.
func (p *Pager[T]) More() bool { return p.err != nil || p.next != "" }

// Cursor is the URL of the next page ("" when done). Store it to resume with ListOptions.Cursor.
func (p *Pager[T]) Cursor() string { return p.next }

// Next fetches the next page. It returns an empty slice and no error once the listing is done.
// A failed page can be fetched again by calling Next again.
func (p *Pager[T]) Next(ctx context.Context) ([]T, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.next == "" {
		return nil, nil
	}
	var pg page[T]
	cur := p.next
	if err := p.c.do(ctx, call{method: p.method, target: cur, body: p.body, idempotent: true}, &pg); err != nil {
		return nil, fmt.Errorf("list %s: %w", p.prefix, err)
	}
	next := pg.Links.Next
	if next == "" {
		next = pg.NextPageURL
	}
	if next != "" {
		u, err := p.c.resolve(next, nil)
		switch {
		case err != nil:
			p.err = fmt.Errorf("list %s: %w", p.prefix, err)
		case p.c.relPath(u) != p.prefix:
			p.err = fmt.Errorf("list %s: next link leaves the listing (%s)", p.prefix, p.c.relPath(u))
		case u.String() == cur:
			p.err = fmt.Errorf("list %s: next link repeats the current page", p.prefix)
		default:
			next = u.String()
		}
		if p.err != nil {
			next = ""
		}
	}
	// A bad next link is reported by the following call, so this page's items are not lost.
	p.next = next
	return pg.Data, nil
}

// All yields every item of every remaining page. It stops at the first error, yielding it.
func (p *Pager[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for p.More() {
			items, err := p.Next(ctx)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// Collect reads every remaining page into one slice.
func (p *Pager[T]) Collect(ctx context.Context) ([]T, error) {
	var all []T
	for it, err := range p.All(ctx) {
		if err != nil {
			return all, err
		}
		all = append(all, it)
	}
	return all, nil
}
