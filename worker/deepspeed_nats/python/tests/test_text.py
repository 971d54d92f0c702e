import unittest

from inferq_runner.text import ByteDetokenizer, ByteTokenizer, TextStream


def stream_pieces(pieces, stop):
    """Feeds pieces to a TextStream as generation does; returns (chunks, text)."""
    s = TextStream(stop)
    chunks = []
    for p in pieces:
        if s.add(p):
            break
        chunks.append(s.ready())
    chunks.append(s.ready(final=True))
    return chunks, s.text


class Utf8Test(unittest.TestCase):
    def test_multibyte_chars_are_emitted_whole(self):
        text = "añ€😀!"
        d = ByteDetokenizer()
        pieces = [d.push(b) for b in text.encode("utf-8")] + [d.flush()]
        self.assertEqual("".join(pieces), text)
        for p in pieces:  # no piece holds a partial character
            p.encode("utf-8")
        self.assertEqual(pieces[:3], ["a", "", "ñ"])

    def test_invalid_bytes_are_consistent(self):
        raw = b"ok\xff\xe2\x82"  # an invalid byte and a truncated sequence at the end
        d = ByteDetokenizer()
        pieces = [d.push(b) for b in raw] + [d.flush()]
        self.assertEqual("".join(pieces), raw.decode("utf-8", errors="replace"))

    def test_eos_has_no_text(self):
        tok = ByteTokenizer()
        self.assertEqual(ByteDetokenizer().push(tok.eos_id), "")
        self.assertEqual(tok.encode("hé")[0], tok.eos_id)  # BOS


class StopTest(unittest.TestCase):
    def test_stop_across_pieces(self):
        chunks, text = stream_pieces(["Hel", "lo EN", "D more"], ["END"])
        self.assertEqual(text, "Hello ")
        self.assertEqual("".join(chunks), "Hello ")
        self.assertEqual(chunks[0], "Hel")

    def test_prefix_is_held_back_then_released(self):
        s = TextStream(["</s>"])
        s.add("abc<")
        self.assertEqual(s.ready(), "abc")
        s.add("/")
        self.assertEqual(s.ready(), "")
        s.add("x")
        self.assertEqual(s.ready(), "</x")
        self.assertFalse(s.stopped)

    def test_earliest_stop_wins(self):
        _, text = stream_pieces(["a", "bXc", "Y"], ["cY", "X"])
        self.assertEqual(text, "ab")

    def test_stop_in_one_piece_and_at_start(self):
        self.assertEqual(stream_pieces(["STOP here"], ["STOP"])[1], "")
        chunks, text = stream_pieces(["a", "b", "c"], ["zz"])
        self.assertEqual((text, "".join(chunks)), ("abc", "abc"))

    def test_final_releases_held_text(self):
        s = TextStream(["###"])
        s.add("x##")
        self.assertEqual(s.ready(), "x")
        self.assertEqual(s.ready(final=True), "##")


if __name__ == "__main__":
    unittest.main()
