package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// station is a made-up weather station of the weather flavor.
type station struct {
	ID, Name, City, Country string
}

// stations is the weather flavor's station catalogue.
var stations = []station{
	{"KSEA", "Seattle-Tacoma International", "Seattle", "US"},
	{"KSFO", "San Francisco International", "San Francisco", "US"},
	{"KJFK", "John F. Kennedy International", "New York", "US"},
	{"KORD", "Chicago O'Hare International", "Chicago", "US"},
	{"EGLL", "London Heathrow", "London", "GB"},
	{"LFPG", "Paris Charles de Gaulle", "Paris", "FR"},
	{"EDDB", "Berlin Brandenburg", "Berlin", "DE"},
	{"EHAM", "Amsterdam Schiphol", "Amsterdam", "NL"},
	{"LOWW", "Vienna Schwechat", "Vienna", "AT"},
	{"RJTT", "Tokyo Haneda", "Tokyo", "JP"},
	{"YSSY", "Sydney Kingsford Smith", "Sydney", "AU"},
	{"SBGR", "São Paulo Guarulhos", "São Paulo", "BR"},
	{"FAOR", "Johannesburg O. R. Tambo", "Johannesburg", "ZA"},
}

// skies are the conditions a made-up forecast picks from.
var skies = []string{"sunny", "partly cloudy", "cloudy", "light rain", "showers", "thunderstorms", "fog", "windy"}

// weatherTools returns the tools of the weather flavor.
func (b *backend) weatherTools() []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: mcp.NewTool("search",
				mcp.WithDescription("Finds weather stations whose ICAO code, name, city or country contains the query (case-insensitive)."),
				mcp.WithString("query", mcp.Required(), mcp.Description("Text to look for, for example \"paris\" or \"KSEA\".")),
				readOnly(),
			),
			Handler: b.searchStations,
		},
		{
			Tool: mcp.NewTool("forecast",
				mcp.WithDescription("Returns a made-up daily forecast (high, low, sky, chance of rain) for a city."),
				mcp.WithString("city", mcp.Required(), mcp.Description("City name, for example \"Vienna\".")),
				mcp.WithInteger("days", mcp.Min(1), mcp.Max(7), mcp.DefaultNumber(3), mcp.Description("Number of days, 1 to 7.")),
				readOnly(),
			),
			Handler: b.forecast,
		},
	}
}

// searchStations lists the stations matching the query.
func (b *backend) searchStations(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	query, err := req.RequireString("query")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	q := strings.ToLower(strings.TrimSpace(query))
	var lines []string
	for _, s := range stations {
		hay := strings.ToLower(strings.Join([]string{s.ID, s.Name, s.City, s.Country}, " "))
		if strings.Contains(hay, q) {
			lines = append(lines, fmt.Sprintf("%s  %s (%s, %s)", s.ID, s.Name, s.City, s.Country))
		}
	}
	if len(lines) == 0 {
		return mcp.NewToolResultText(fmt.Sprintf("no weather stations on %s match %q", b.name, query)), nil
	}
	return mcp.NewToolResultText(fmt.Sprintf("%s on %s matching %q:\n%s",
		count(len(lines), "weather station"), b.name, query, strings.Join(lines, "\n"))), nil
}

// forecast makes up a deterministic forecast for a city.
func (b *backend) forecast(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	city, err := req.RequireString("city")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	city = strings.TrimSpace(city)
	if city == "" {
		return mcp.NewToolResultError("city must not be empty"), nil
	}
	days := req.GetInt("days", 3)
	if days < 1 || days > 7 {
		return mcp.NewToolResultError("days must be between 1 and 7"), nil
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "%d-day forecast for %s from %s:", days, city, b.name)
	for day := 1; day <= days; day++ {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%d", strings.ToLower(city), day)
		v := h.Sum32()
		high := int(v%25) + 5
		low := high - int((v>>8)%8) - 3
		fmt.Fprintf(&sb, "\nday %d: %d°C / %d°C, %s, %d%% chance of rain",
			day, high, low, skies[int((v>>16)%uint32(len(skies)))], int((v>>24)%10)*10)
	}
	return mcp.NewToolResultText(sb.String()), nil
}

// count renders "1 note", "2 notes".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// note is one note of the notes flavor.
type note struct {
	ID, Title, Body string
}

// noteStore is the notes flavor's in-memory, process-lifetime store.
type noteStore struct {
	mu    sync.Mutex
	notes []note
}

// newNoteStore returns a store seeded with a few notes.
func newNoteStore() *noteStore {
	s := &noteStore{}
	s.add("Quarterly planning", "Q3 goals: ship vmcp 1.0 and halve the p99 latency of tools/call.")
	s.add("Groceries", "Oat milk, coffee beans, lemons, basil.")
	s.add("Meeting with Carol", "Walk through tool name prefixing in the aggregator; bring the search examples.")
	s.add("Reading list", "Designing Data-Intensive Applications; the MCP specification, transports chapter.")
	return s
}

// add stores a note and returns it.
func (s *noteStore) add(title, body string) note {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := note{ID: fmt.Sprintf("note-%d", len(s.notes)+1), Title: title, Body: body}
	s.notes = append(s.notes, n)
	return n
}

// search returns the notes whose title or body contains query
// (case-insensitive), oldest first.
func (s *noteStore) search(query string) []note {
	q := strings.ToLower(strings.TrimSpace(query))
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []note
	for _, n := range s.notes {
		if strings.Contains(strings.ToLower(n.Title+"\n"+n.Body), q) {
			out = append(out, n)
		}
	}
	return out
}

// notesTools returns the tools of the notes flavor.
func (b *backend) notesTools() []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: mcp.NewTool("search",
				mcp.WithDescription("Searches the notes whose title or body contains the query (case-insensitive)."),
				mcp.WithString("query", mcp.Required(), mcp.Description("Text to look for, for example \"carol\".")),
				readOnly(),
			),
			Handler: b.searchNotes,
		},
		{
			Tool: mcp.NewTool("create_note",
				mcp.WithDescription("Creates a note and returns its id. Notes live in memory until the backend exits."),
				mcp.WithString("title", mcp.Required(), mcp.Description("Title of the note.")),
				mcp.WithString("body", mcp.Required(), mcp.Description("Text of the note.")),
				mutating(false),
			),
			Handler: b.createNote,
		},
	}
}

// searchNotes lists the notes matching the query.
func (b *backend) searchNotes(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	query, err := req.RequireString("query")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	found := b.notes.search(query)
	if len(found) == 0 {
		return mcp.NewToolResultText(fmt.Sprintf("no notes on %s match %q", b.name, query)), nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s on %s matching %q:", count(len(found), "note"), b.name, query)
	for _, n := range found {
		fmt.Fprintf(&sb, "\n%s  %s: %s", n.ID, n.Title, n.Body)
	}
	return mcp.NewToolResultText(sb.String()), nil
}

// createNote adds a note.
func (b *backend) createNote(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	title, err := req.RequireString("title")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	body, err := req.RequireString("body")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if strings.TrimSpace(title) == "" {
		return mcp.NewToolResultError("title must not be empty"), nil
	}
	n := b.notes.add(title, body)
	return mcp.NewToolResultText(fmt.Sprintf("created %s on %s: %s", n.ID, b.name, n.Title)), nil
}
