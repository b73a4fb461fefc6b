package optimizer

import (
	"math"
	"slices"
)

type fusionVariant struct {
	name    string
	w       float64
	lexPool int
	vecPool int
	norm    string // mm, tmm, z, rrf
}

var fusionVariants = []fusionVariant{
	{"mm 100/100 w.5", 0.5, 100, 100, "mm"},
	{"mm 100/20 w.5", 0.5, 100, 20, "mm"},
	{"mm 100/10 w.5", 0.5, 100, 10, "mm"},
	{"mm 50/50 w.5", 0.5, 50, 50, "mm"},
	{"mm 20/20 w.5", 0.5, 20, 20, "mm"},
	{"mm 10/10 w.5", 0.5, 10, 10, "mm"},
	{"tmm 100/100 w.5", 0.5, 100, 100, "tmm"},
	{"tmm0 100/100 w.5", 0.5, 100, 100, "tmm0"},
	{"z 100/100 w.5", 0.5, 100, 100, "z"},
	{"rrf 100/100", 0.5, 100, 100, "rrf"},
	{"mm 100/100 w.3", 0.3, 100, 100, "mm"},
	{"mm 100/100 w.4", 0.4, 100, 100, "mm"},
	{"tmm 100/100 w.7", 0.7, 100, 100, "tmm"},
}

func (ix *Index) fuseVariant(desc string, cos []float32, v fusionVariant, k int) []Match {
	lex := ix.Search(desc, "", len(ix.tools))
	lexScore := map[uint32]float64{}
	lexRank := map[uint32]int{}
	var maxLex float64
	var cands []uint32
	for i, m := range lex {
		if i < v.lexPool {
			cands = append(cands, m.doc)
		}
		lexScore[m.doc] = m.Score
		lexRank[m.doc] = i + 1
		maxLex = max(maxLex, m.Score)
	}
	docs := make([]uint32, len(cos))
	shifted := make([]float32, len(cos))
	for d, c := range cos {
		docs[d] = uint32(d)
		shifted[d] = c + 1.000001
	}
	vecTop := topK(shifted, docs, len(cos))
	vecRank := map[uint32]int{}
	for i, s := range vecTop {
		vecRank[s.doc] = i + 1
		if i < v.vecPool && !slices.Contains(cands, s.doc) {
			cands = append(cands, s.doc)
		}
	}
	minCos, maxCos := float32(math.Inf(1)), float32(math.Inf(-1))
	var mean, sq float64
	for _, d := range cands {
		minCos, maxCos = min(minCos, cos[d]), max(maxCos, cos[d])
		mean += float64(cos[d])
	}
	mean /= float64(len(cands))
	var lmean float64
	for _, d := range cands {
		sq += (float64(cos[d]) - mean) * (float64(cos[d]) - mean)
		lmean += lexScore[d]
	}
	lmean /= float64(len(cands))
	var lsq float64
	for _, d := range cands {
		lsq += (lexScore[d] - lmean) * (lexScore[d] - lmean)
	}
	sd := math.Sqrt(sq / float64(len(cands)))
	lsd := math.Sqrt(lsq / float64(len(cands)))
	out := make([]scored, 0, len(cands))
	for _, d := range cands {
		var vv, l float64
		switch v.norm {
		case "mm":
			if maxCos > minCos {
				vv = float64(cos[d]-minCos) / float64(maxCos-minCos)
			}
			if maxLex > 0 {
				l = lexScore[d] / maxLex
			}
		case "tmm":
			vv = (float64(cos[d]) + 1) / (float64(maxCos) + 1)
			if maxLex > 0 {
				l = lexScore[d] / maxLex
			}
		case "tmm0":
			vv = math.Max(0, float64(cos[d])) / math.Max(1e-9, float64(maxCos))
			if maxLex > 0 {
				l = lexScore[d] / maxLex
			}
		case "z":
			vv = (float64(cos[d]) - mean) / math.Max(sd, 1e-9)
			l = (lexScore[d] - lmean) / math.Max(lsd, 1e-9)
		case "rrf":
			if r, ok := vecRank[d]; ok {
				vv = 1 / float64(60+r)
			}
			if r, ok := lexRank[d]; ok {
				l = 1 / float64(60+r)
			}
		}
		out = append(out, scored{doc: d, score: float32(v.w*vv + (1-v.w)*l)})
	}
	slices.SortFunc(out, func(a, b scored) int {
		if better(a, b) {
			return -1
		}
		return 1
	})
	out = out[:min(k, len(out))]
	m := make([]Match, len(out))
	for i, s := range out {
		m[i] = Match{Tool: &ix.tools[s.doc], Score: float64(s.score), doc: s.doc}
	}
	return m
}
