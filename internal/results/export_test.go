package results

// WaitersOf is how many waiters a store has registered for job id's record
// (tokens false) or its tokens (tokens true): tests wait for a waiter to be
// in place instead of sleeping.
func WaitersOf(s Store, id string, tokens bool) int {
	key := id
	if tokens {
		key = tokenWaiters(id)
	}
	var w *waiters
	switch st := s.(type) {
	case *RedisStore:
		w = &st.waiters
	case *KVStore:
		w = &st.waiters
	default:
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m[key])
}
