import unittest

from inferq_runner.continuous import Engine, Finished
from inferq_runner.generate import Request, generate
from inferq_runner.sampling import GenParams

from .test_generate import collect, greedy, tiny_lm


def run_all(engine, joins=None, cancel_at=None):
    """Steps engine until idle; joins maps a step number to requests to add
    then; cancel_at maps a step number to a flag list to set. Returns the
    finished sequences by key and the step each ended at."""
    joins, cancel_at = joins or {}, cancel_at or {}
    done: dict[object, Finished] = {}
    ended_at: dict[object, int] = {}
    step = 0
    while True:
        for key, req in joins.pop(step, []):
            engine.add(key, req)
        for flag in cancel_at.pop(step, []):
            flag.append(True)
        if engine.idle() and not joins:
            return done, ended_at
        finished, _ = engine.step()
        for f in finished:
            done[f.key], ended_at[f.key] = f, step
        step += 1


def join_steps(engine, lm, longs, adds, short_tokens):
    """Runs engine for 30 steps with the long sequences longs ((key, prompt),
    40 tokens each) from step 0 and, at each step in adds, that many short
    ones of short_tokens; returns (step, how many joined) for each step at
    which sequences joined."""
    for key, prompt in longs:
        engine.add(key, Request(lm.encode(prompt), greedy(40)))
    seen, keys = [], 0
    for step in range(30):
        for _ in range(adds.get(step, 0)):
            engine.add(keys, Request(lm.encode("q%d" % keys), greedy(short_tokens)))
            keys += 1
        _, st = engine.step()
        if st.joined:
            seen.append((step, st.joined))
    return seen


class ContinuousTest(unittest.TestCase):
    prompts = ["Hello", "The quick brown fox jumps", "", "é", "x" * 40]

    def alone(self, lm, prompt, params):
        return generate(lm, [Request(lm.encode(prompt), params)])[0]

    def test_joining_sequences_match_their_solo_tokens(self):
        lm = tiny_lm()
        lengths = [30, 7, 18, 25, 12]
        joins = {
            0: [(0, Request(lm.encode(self.prompts[0]), greedy(lengths[0])))],
            3: [(1, Request(lm.encode(self.prompts[1]), greedy(lengths[1])))],
            5: [(i, Request(lm.encode(self.prompts[i]), greedy(lengths[i]))) for i in (2, 3)],
            11: [(4, Request(lm.encode(self.prompts[4]), greedy(lengths[4])))],
        }
        done, ended_at = run_all(Engine(lm, max_num_seqs=8), joins)
        self.assertEqual(sorted(done), [0, 1, 2, 3, 4])
        for i, p in enumerate(self.prompts):
            solo = self.alone(lm, p, greedy(lengths[i]))
            self.assertEqual(done[i].tokens, solo.tokens, p)
            self.assertEqual((done[i].text, done[i].reason), (solo.text, solo.reason), p)
        # Finished sequences leave the step they end, not with the batch.
        self.assertLess(ended_at[1], ended_at[0])

    def test_seeded_sampling_is_independent_of_neighbours(self):
        lm = tiny_lm()
        params = GenParams(max_tokens=20, temperature=0.9, top_k=40, seed=7)
        joins = {
            0: [("n", Request(lm.encode("neighbour"), GenParams(max_tokens=30, temperature=1.0, seed=1)))],
            4: [("s", Request(lm.encode("seeded"), params))],
        }
        done, _ = run_all(Engine(lm), joins)
        self.assertEqual(done["s"].text, self.alone(lm, "seeded", params).text)

    def test_cancelling_one_sequence_leaves_neighbours_unchanged(self):
        lm = tiny_lm()
        flag: list[bool] = []
        chunks, on_chunk = collect()
        joins = {
            0: [
                ("a", Request(lm.encode("alpha"), greedy(20))),
                ("b", Request(lm.encode("bravo"), greedy(20), on_chunk, lambda: bool(flag))),
                ("c", Request(lm.encode("charlie is longer"), greedy(20))),
            ]
        }
        done, ended_at = run_all(Engine(lm), joins, {5: [flag]})
        self.assertEqual(done["b"].reason, "cancelled")
        self.assertEqual(ended_at["b"], 5)
        self.assertFalse(any(final for _, _, final in chunks))
        for key, prompt in (("a", "alpha"), ("c", "charlie is longer")):
            self.assertEqual(done[key].tokens, self.alone(lm, prompt, greedy(20)).tokens)

    def test_max_num_seqs_and_step_token_budget(self):
        lm = tiny_lm()
        engine = Engine(lm, max_num_seqs=2, max_step_tokens=12)
        for i in range(3):
            engine.add(i, Request(lm.encode("ten bytes!"), greedy(4)))
        self.assertEqual(engine.free_slots, 0)
        seen = []
        while not engine.idle():
            _, st = engine.step()
            seen.append((st.running, st.joined))
        # 10 prompt tokens each, 12 per step: one joins per step, never more than two run.
        self.assertEqual(seen[0], (1, 1))
        self.assertLessEqual(max(r for r, _ in seen), 2)
        self.assertEqual(sum(j for _, j in seen), 3)

    def test_deadline_and_zero_tokens(self):
        lm = tiny_lm()
        done, _ = run_all(
            Engine(lm),
            {
                0: [
                    ("late", Request(lm.encode("x"), greedy(10), deadline_ns=1)),
                    ("zero", Request(lm.encode("x"), greedy(0))),
                    ("ok", Request(lm.encode("x"), greedy(3))),
                ]
            },
        )
        self.assertEqual(done["late"].reason, "expired")
        self.assertEqual((done["zero"].reason, done["zero"].tokens), ("length", []))
        self.assertEqual(done["ok"].tokens, self.alone(lm, "x", greedy(3)).tokens)

    def test_grouped_admission_waits_for_a_group_or_the_oldest_to_age(self):
        lm = tiny_lm()

        def joins_at(join_every, adds):
            """Steps at which sequences joined, beside one long running
            sequence; adds maps a step to how many short ones to add."""
            # A group is 2; only an empty set is joined at once.
            engine = Engine(lm, max_num_seqs=8, join_every_steps=join_every, join_at_once_below=1)
            return join_steps(engine, lm, [("long", "long")], adds, short_tokens=3)

        self.assertEqual(joins_at(1, {5: 1}), [(0, 1), (5, 1)])  # today's behaviour: at once
        self.assertEqual(joins_at(4, {5: 1}), [(0, 1), (8, 1)])  # alone: after 3 more steps
        self.assertEqual(joins_at(4, {5: 1, 6: 1}), [(0, 1), (6, 2)])  # a group of 2 joins at once
        self.assertEqual(joins_at(4, {5: 3}), [(0, 1), (5, 3)])  # 3 waiting fill a group

    def test_grouped_admission_keeps_tokens_and_ends_cancelled_waiters_at_once(self):
        lm = tiny_lm()
        flag: list[bool] = []
        joins = {
            0: [("a", Request(lm.encode("alpha"), greedy(30)))],
            2: [
                ("b", Request(lm.encode("bravo"), greedy(12))),
                ("x", Request(lm.encode("cancelled"), greedy(12), is_cancelled=lambda: bool(flag))),
            ],
            4: [("c", Request(lm.encode("charlie"), greedy(9)))],
        }
        engine = Engine(lm, max_num_seqs=32, join_every_steps=16, join_at_once_below=1)
        done, ended_at = run_all(engine, joins, {3: [flag]})
        self.assertEqual((done["x"].reason, ended_at["x"]), ("cancelled", 3))
        for key, prompt, n in (("a", "alpha", 30), ("b", "bravo", 12), ("c", "charlie", 9)):
            self.assertEqual(done[key].tokens, self.alone(lm, prompt, greedy(n)).tokens, key)
        # b waited 15 steps (2 -> 17) and c joined with it: 17 + 12 tokens - 1.
        self.assertEqual((ended_at["b"], ended_at["c"]), (17 + 11, 17 + 8))

    def test_a_small_running_set_is_joined_at_once(self):
        lm = tiny_lm()

        def joins_at(below, adds, running=1):
            """Steps at which sequences joined and how many, beside running
            long sequences; adds maps a step to how many short ones to add."""
            engine = Engine(lm, max_num_seqs=8, join_every_steps=8, join_at_once_below=below)
            longs = [(("long", i), "long %d" % i) for i in range(running)]
            return join_steps(engine, lm, longs, adds, short_tokens=20)

        self.assertEqual(Engine(lm, max_num_seqs=8).join_at_once_below, 4)  # the default: half
        self.assertEqual(Engine(lm, max_num_seqs=1).join_at_once_below, 1)
        # Fewer than 4 running: each joins at once, as with join_every_steps 1.
        self.assertEqual(joins_at(0, {3: 1, 5: 1}), [(0, 1), (3, 1), (5, 1)])
        self.assertEqual(joins_at(1, {3: 1}), [(0, 1), (10, 1)])  # 1: a lone waiter waits 7 steps, as before
        # From 4 running on, a lone waiter waits for a group or 7 steps.
        self.assertEqual(joins_at(0, {3: 1, 5: 1}, running=3), [(0, 3), (3, 1), (12, 1)])
        # Its tokens are those it decodes alone.
        engine = Engine(lm, max_num_seqs=8, join_every_steps=8)
        done, _ = run_all(
            engine,
            {0: [("a", Request(lm.encode("alpha"), greedy(30)))], 4: [("b", Request(lm.encode("bravo"), greedy(9)))]},
        )
        for key, prompt, n in (("a", "alpha", 30), ("b", "bravo", 9)):
            self.assertEqual(done[key].tokens, self.alone(lm, prompt, greedy(n)).tokens, key)


if __name__ == "__main__":
    unittest.main()
