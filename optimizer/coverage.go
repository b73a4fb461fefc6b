package optimizer

import (
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/runes"
)

// Bounds of find_tool's account of the catalogue: a description is read by
// the model at every turn, so it names the servers and a hint of each, not
// their tools.
const (
	maxHintRunes     = 60
	maxCoverageRunes = 800
	hintTools        = 3
)

// Coverage says what the catalogue covers, for find_tool's description:
// each server's name with a hint of what it does (its title or
// description, else the start of its instructions, else its first tools'
// names as words), in catalogue order, cut to maxCoverageRunes with the
// number of servers left out. "" for an empty catalogue.
func Coverage(tools []mcp.Tool, servers []*Server) string {
	type entry struct {
		s     *Server
		tools []string
	}
	var order []*entry
	byServer := map[*Server]*entry{}
	var noServer *entry
	for i := range tools {
		var s *Server
		if i < len(servers) {
			s = servers[i]
		}
		e := noServer
		if s != nil {
			e = byServer[s]
		}
		if e == nil {
			e = &entry{s: s}
			order = append(order, e)
			if s != nil {
				byServer[s] = e
			} else {
				noServer = e
			}
		}
		if len(e.tools) < hintTools {
			name := identifierWords(tools[i].Name)
			if s != nil {
				name = strings.TrimPrefix(name, identifierWords(s.Name)+" ")
			}
			e.tools = append(e.tools, name)
		}
	}
	var b strings.Builder
	for i, e := range order {
		var item string
		switch {
		case e.s == nil:
			item = "tools such as " + strings.Join(e.tools, ", ")
		default:
			hint := firstOf(e.s.Title, e.s.Description, firstSentence(e.s.Instructions))
			if hint == "" {
				hint = strings.Join(e.tools, ", ")
			}
			item = fmt.Sprintf("%s (%s)", e.s.Name, runes.Cut(hint, maxHintRunes))
		}
		sep := ""
		if i > 0 {
			sep = "; "
		}
		more := fmt.Sprintf("; and %d more servers", len(order)-i)
		if runeLen(b.String())+runeLen(sep+item)+runeLen(more) > maxCoverageRunes && i > 0 {
			b.WriteString(more)
			break
		}
		b.WriteString(sep + item)
	}
	return b.String()
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x = strings.TrimSpace(x); x != "" {
			return x
		}
	}
	return ""
}

// firstSentence returns s up to its first sentence's end or line break.
func firstSentence(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\n"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

func runeLen(s string) int { return len([]rune(s)) }
