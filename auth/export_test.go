package auth

// SignatureChecks reports how many signature checks v's key set has run,
// so tests can tell a cache hit from a full verification.
func SignatureChecks(v *Verifier) int64 { return v.keys.verifications.Load() }
