package optimizer

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/runes"
)

// The fields of a tool document, each weighted and length-normalised on its
// own (BM25F).
const (
	fieldName       = iota // name and titles
	fieldDesc              // description
	fieldParamNames        // input parameter names
	fieldParams            // input parameter descriptions, titles and enum values
	fieldServer            // the server's name, title, description and instructions
	numFields
)

// params are the ranking constants. Only tests change them, to measure what
// each choice buys; every index is built with defaultParams.
type params struct {
	k1 float64 // term-frequency saturation
	// weight scales a field's term frequency before saturation: a name is a
	// tool's most deliberate summary, a parameter's text its least.
	weight [numFields]float64
	b      [numFields]float64 // length normalisation per field
	// keywordWeight is the query weight of a term from the keywords argument,
	// added to its weight from the description.
	keywordWeight float64
	stopWords     bool // drop stop words
	stemming      bool // Snowball-stem English words
	subword       bool // expand query terms absent from the vocabulary
	schema        bool // index the input schema (the parameters field)
	server        bool // index the server's context (the server field)
	queryTF       bool // count a term repeated in the description each time
}

var defaultParams = params{
	k1: 1.2, // the usual BM25 value: a second occurrence counts, a tenth barely
	// Name ×3 follows the common title boost in multi-field BM25; parameter
	// names are identifiers the author chose, like the description's words;
	// parameter text ×0.5 because it mostly describes values, not purpose.
	// The server field says which server (product, service) a tool belongs
	// to, which a request often names ("my GitHub issues"); it weighs like
	// the description.
	weight:        [numFields]float64{3, 1, 1, 0.5, 1},
	b:             [numFields]float64{0.75, 0.75, 0.75, 0.75, 0.75}, // the usual BM25 value, per field
	keywordWeight: 1,                                                // a keyword counts like one more mention in the description
	stopWords:     true,
	stemming:      true,
	subword:       true,
	schema:        true,
	server:        true,
}

// Index is an immutable search index over a tool catalogue, built once per
// catalogue and shared by all sessions; safe for concurrent Search.
type Index struct {
	tools []mcp.Tool // the catalogue, by reference; never modified
	p     params

	vocab map[string]uint32 // term -> term id
	// sorted lists the vocabulary in byte order with ids, for prefix lookups.
	sorted    []string
	sortedIDs []uint32

	// Postings in compressed-row form: the documents holding term t are
	// postDoc[postStart[t]:postStart[t+1]], ascending, and postW holds the
	// saturated BM25F term weight of each (idf not included).
	postStart []uint32
	postDoc   []uint32
	postW     []float32
	idf       []float32

	scratch sync.Pool // *scratch sized to the catalogue
}

// Match is one search result.
type Match struct {
	Tool  *mcp.Tool
	Score float64
	doc   uint32 // the tool's position in the catalogue
}

// Server is what the index knows of the server a tool comes from: its
// server field.
type Server struct {
	// Name is the backend's configured name ("github", "jira-cloud").
	Name string
	// Title, Description and Instructions are what the server said of
	// itself in initialize (serverInfo's title and description, and its
	// instructions).
	Title, Description, Instructions string
}

// maxServerTextRunes bounds the instructions indexed in a server's field: a
// server's purpose is in its first paragraphs, and every one of its tools
// carries the field.
const maxServerTextRunes = 2000

// ServersByName returns one *Server per name, named so (a catalogue whose
// servers say nothing of themselves): tools of one server share it.
func ServersByName(names []string) []*Server {
	byName := make(map[string]*Server)
	out := make([]*Server, len(names))
	for i, n := range names {
		s := byName[n]
		if s == nil {
			s = &Server{Name: n}
			byName[n] = s
		}
		out[i] = s
	}
	return out
}

// NewIndex builds the index over tools (post-aggregation names; the slice is
// the catalogue's: the index keeps it by reference and never modifies it).
// servers, nil or one per tool, is the server each tool comes from; tools
// of one server may share one *Server.
func NewIndex(tools []mcp.Tool, servers []*Server) *Index {
	return newIndex(tools, servers, defaultParams)
}

// Tools returns the indexed catalogue (not to be modified).
func (ix *Index) Tools() []mcp.Tool { return ix.tools }

// Len returns the number of indexed tools.
func (ix *Index) Len() int { return len(ix.tools) }

// posting is one (term, document) pair while the index is built.
type posting struct {
	term uint32
	doc  uint32
	tf   [numFields]uint16
}

func newIndex(tools []mcp.Tool, servers []*Server, p params) *Index {
	ix := &Index{tools: tools, p: p, vocab: make(map[string]uint32)}
	an := analyzer{cache: make(map[string]string), noStop: !p.stopWords, noStem: !p.stemming}

	var (
		all     []posting
		lens    = make([][numFields]uint32, len(tools))
		sumLen  [numFields]float64
		occ     []uint64 // term<<3 | field of each token of one document
		field   uint64
		addTerm = func(t string) {
			id, ok := ix.vocab[t]
			if !ok {
				id = uint32(len(ix.vocab))
				ix.vocab[t] = id
			}
			occ = append(occ, uint64(id)<<3|field)
		}
		addText = func(s string) { an.terms(s, addTerm) }
		// serverTerms are each server's terms (occ entries), analysed once.
		serverTerms = map[*Server][]uint64{}
	)
	for d := range tools {
		t := &tools[d]
		occ = occ[:0]
		field = fieldName
		addText(t.Name)
		addText(t.Title)
		addText(t.Annotations.Title)
		field = fieldDesc
		addText(t.Description)
		if p.schema {
			schemaText(t, func(s string) {
				field = fieldParamNames
				addText(s)
			}, func(s string) {
				field = fieldParams
				addText(s)
			})
		}
		if p.server && d < len(servers) && servers[d] != nil {
			// Analysed once per server: its tools share the terms.
			s := servers[d]
			terms, ok := serverTerms[s]
			if !ok {
				field = fieldServer
				start := len(occ)
				addText(s.Name)
				addText(s.Title)
				addText(s.Description)
				addText(runes.Cut(s.Instructions, maxServerTextRunes))
				terms = slices.Clone(occ[start:])
				serverTerms[s] = terms
			} else {
				occ = append(occ, terms...)
			}
		}
		slices.Sort(occ)
		for i := 0; i < len(occ); {
			term := uint32(occ[i] >> 3)
			pst := posting{term: term, doc: uint32(d)}
			for ; i < len(occ) && uint32(occ[i]>>3) == term; i++ {
				f := occ[i] & 7
				if pst.tf[f] < math.MaxUint16 {
					pst.tf[f]++
				}
				lens[d][f]++
			}
			all = append(all, pst)
		}
		for f := range numFields {
			sumLen[f] += float64(lens[d][f])
		}
	}

	var avgLen [numFields]float64
	for f := range numFields {
		avgLen[f] = sumLen[f] / math.Max(1, float64(len(tools)))
	}

	// Counting sort of the postings by term; within a term they stay in
	// document order because all is in document order.
	nTerms := len(ix.vocab)
	ix.postStart = make([]uint32, nTerms+1)
	for _, pst := range all {
		ix.postStart[pst.term+1]++
	}
	for t := range nTerms {
		ix.postStart[t+1] += ix.postStart[t]
	}
	ix.postDoc = make([]uint32, len(all))
	ix.postW = make([]float32, len(all))
	fill := slices.Clone(ix.postStart[:nTerms])
	for _, pst := range all {
		var tf float64 // BM25F: per-field normalised, weighted frequencies summed before saturation
		for f := range numFields {
			if pst.tf[f] == 0 {
				continue
			}
			norm := 1 - p.b[f] + p.b[f]*float64(lens[pst.doc][f])/avgLen[f]
			tf += p.weight[f] * float64(pst.tf[f]) / norm
		}
		i := fill[pst.term]
		fill[pst.term]++
		ix.postDoc[i] = pst.doc
		ix.postW[i] = float32(tf * (p.k1 + 1) / (p.k1 + tf))
	}

	n := float64(len(tools))
	ix.idf = make([]float32, nTerms)
	for t := range nTerms {
		df := float64(ix.postStart[t+1] - ix.postStart[t])
		ix.idf[t] = float32(math.Log(1 + (n-df+0.5)/(df+0.5)))
	}

	ix.sorted = make([]string, 0, nTerms)
	for t := range ix.vocab {
		ix.sorted = append(ix.sorted, t)
	}
	sort.Strings(ix.sorted)
	ix.sortedIDs = make([]uint32, nTerms)
	for i, t := range ix.sorted {
		ix.sortedIDs[i] = ix.vocab[t]
	}

	ix.scratch.New = func() any {
		return &scratch{scores: make([]float32, len(tools))}
	}
	return ix
}

// scratch is one Search's working memory, pooled: a score per document
// (zero outside touched) and the documents scored so far.
type scratch struct {
	scores  []float32
	touched []uint32
}

// qterm is one weighted query term.
type qterm struct {
	id uint32
	w  float32
}

// Search returns up to k tools best matching a task description and optional
// keywords, best first, only tools with score > 0. Keywords count as extra
// query terms on top of the description. Ties keep catalogue order.
func (ix *Index) Search(description, keywords string, k int) []Match {
	if k <= 0 || len(ix.tools) == 0 {
		return nil
	}
	s := ix.score(description, keywords)
	if s == nil {
		return nil
	}
	defer ix.release(s)
	out := topK(s.scores, s.touched, k)
	matches := make([]Match, len(out))
	for i, d := range out {
		matches[i] = Match{Tool: &ix.tools[d.doc], Score: float64(d.score), doc: d.doc}
	}
	return matches
}

// score computes the BM25F score of every tool the search text touches
// into a pooled scratch (scores by document, zero elsewhere; touched lists
// the scored documents), or returns nil when no query term is in the
// vocabulary. The caller gives it back with release.
func (ix *Index) score(description, keywords string) *scratch {
	q := ix.query(description, keywords)
	if len(q) == 0 {
		return nil
	}
	s := ix.scratch.Get().(*scratch)
	scores, touched := s.scores, s.touched[:0]
	for _, qt := range q {
		w := qt.w * ix.idf[qt.id]
		lo, hi := ix.postStart[qt.id], ix.postStart[qt.id+1]
		docs, ws := ix.postDoc[lo:hi], ix.postW[lo:hi]
		for i, d := range docs {
			if scores[d] == 0 {
				touched = append(touched, d)
			}
			scores[d] += w * ws[i]
		}
	}
	s.touched = touched
	return s
}

// release clears a scratch score gave and pools it again.
func (ix *Index) release(s *scratch) {
	for _, d := range s.touched {
		s.scores[d] = 0
	}
	ix.scratch.Put(s)
}

// query turns the search text into weighted terms of the vocabulary, each
// term once. Within the description a repeated term counts once (see
// appendTerms); a keyword adds keywordWeight to its term's weight.
func (ix *Index) query(description, keywords string) []qterm {
	an := analyzer{noStop: !ix.p.stopWords, noStem: !ix.p.stemming}
	q := ix.appendTerms(&an, nil, description, 1)
	q = ix.appendTerms(&an, q, keywords, float32(ix.p.keywordWeight))
	return mergeTerms(q, func(a, b float32) float32 { return a + b })
}

// appendTerms appends the vocabulary terms of text to q with weight w, each
// once: in a request written as prose a repeated word is style, not
// emphasis (binary query term frequency, BM25's k3 = 0, as advised for
// short queries).
func (ix *Index) appendTerms(an *analyzer, q []qterm, text string, w float32) []qterm {
	start := len(q)
	an.terms(text, func(t string) {
		if id, ok := ix.vocab[t]; ok {
			q = append(q, qterm{id, w})
		} else if ix.p.subword {
			q = ix.expand(t, w, q)
		}
	})
	if ix.p.queryTF {
		return q
	}
	return append(q[:start], mergeTerms(q[start:], func(a, b float32) float32 { return max(a, b) })...)
}

// mergeTerms sorts q by term and folds each term's weights into one.
func mergeTerms(q []qterm, fold func(a, b float32) float32) []qterm {
	slices.SortFunc(q, func(a, b qterm) int { return int(a.id) - int(b.id) })
	merged := q[:0]
	for _, qt := range q {
		if n := len(merged); n > 0 && merged[n-1].id == qt.id {
			merged[n-1].w = fold(merged[n-1].w, qt.w)
			continue
		}
		merged = append(merged, qt)
	}
	return merged
}

// Sub-word matching for a query term the catalogue never uses.
const (
	// minPrefixRunes is the shortest term expanded to the vocabulary terms it
	// begins: shorter ones ("co", "in") begin too many unrelated words.
	minPrefixRunes = 4
	// maxExpansions bounds one term's expansions, keeping the rarest (most
	// specific) ones.
	maxExpansions = 8
	// expansionWeight discounts an inferred match against a real one.
	expansionWeight = 0.5
	// minCompoundPart is the shortest half of a split compound ("filesystem"
	// into "file" + "system").
	minCompoundPart = 3
)

// expand appends the vocabulary terms that an out-of-vocabulary query term
// most likely means: terms it is a prefix of (an abbreviation or a stem the
// stemmer left longer in the catalogue: "config" → "configur"), or, failing
// that, the two halves of a closed compound ("filesystem" → "file" "system").
func (ix *Index) expand(t string, w float32, q []qterm) []qterm {
	if len(t) < minPrefixRunes || !isASCIIWord(t) {
		return q
	}
	var found []qterm
	i := sort.SearchStrings(ix.sorted, t)
	for ; i < len(ix.sorted) && strings.HasPrefix(ix.sorted[i], t); i++ {
		found = append(found, qterm{ix.sortedIDs[i], w * expansionWeight})
	}
	if len(found) > maxExpansions {
		slices.SortFunc(found, func(a, b qterm) int {
			return -cmpFloat(ix.idf[a.id], ix.idf[b.id])
		})
		found = found[:maxExpansions]
	}
	if len(found) == 0 {
		for cut := minCompoundPart; cut <= len(t)-minCompoundPart; cut++ {
			l, lok := ix.vocab[t[:cut]]
			r, rok := ix.vocab[stem(t[cut:])]
			if lok && rok {
				found = append(found, qterm{l, w * expansionWeight}, qterm{r, w * expansionWeight})
				break
			}
		}
	}
	return append(q, found...)
}

func cmpFloat(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scored is one candidate of topK.
type scored struct {
	doc   uint32
	score float32
}

// better orders results: higher score first, then catalogue order.
func better(a, b scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.doc < b.doc
}

// topK returns the k best touched documents with a positive score, best
// first.
func topK(scores []float32, touched []uint32, k int) []scored {
	h := newTopHeap(min(k, len(touched)))
	for _, d := range touched {
		if scores[d] > 0 {
			h.offer(scored{d, scores[d]})
		}
	}
	return h.sorted()
}

// topHeap keeps the k best of the candidates offered: a heap whose root is
// the worst of the best so far.
type topHeap struct {
	h []scored
	k int
}

func newTopHeap(k int) *topHeap { return &topHeap{h: make([]scored, 0, k), k: k} }

func (t *topHeap) offer(c scored) {
	h := t.h
	if len(h) < t.k {
		h = append(h, c)
		for i := len(h) - 1; i > 0; { // sift up
			parent := (i - 1) / 2
			if !better(h[parent], h[i]) {
				break
			}
			h[parent], h[i] = h[i], h[parent]
			i = parent
		}
		t.h = h
		return
	}
	if t.k == 0 || !better(c, h[0]) {
		return
	}
	h[0] = c
	for i := 0; ; { // sift down
		worst, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && better(h[worst], h[l]) {
			worst = l
		}
		if r < len(h) && better(h[worst], h[r]) {
			worst = r
		}
		if worst == i {
			break
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// sorted returns the kept candidates, best first.
func (t *topHeap) sorted() []scored {
	slices.SortFunc(t.h, byBetter)
	return t.h
}

// byBetter orders candidates for slices.SortFunc: best first.
func byBetter(a, b scored) int {
	if better(a, b) {
		return -1
	}
	return 1
}
