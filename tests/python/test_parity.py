"""Unit tests of the to_dict() comparer: it must catch a deliberate mismatch."""
import unittest

from parity import compare


class CompareTest(unittest.TestCase):
    def test_identical(self):
        d = {"driver_id": [1001], "conv_rate": [0.5], "profile": [{"a": "1"}]}
        self.assertEqual(compare(d, dict(d)), [])

    def test_catches_a_changed_value(self):
        diffs = compare({"x": [1, 2]}, {"x": [1, 3]})
        self.assertEqual(len(diffs), 1)
        self.assertIn("x[1]", diffs[0])

    def test_catches_a_missing_column_and_a_null(self):
        self.assertTrue(compare({"x": [1], "y": [2]}, {"x": [1]}))
        self.assertTrue(compare({"x": [1]}, {"x": [None]}))
        self.assertTrue(compare({"x": [1.0]}, {"x": [1.0000001]}))

    def test_json_text_equals_parsed_json(self):
        self.assertEqual(compare({"c": [{"k": [1, 2]}]}, {"c": ['{"k": [1, 2]}']}), [])
        self.assertTrue(compare({"c": [{"k": [1, 2]}]}, {"c": ['{"k": [1, 3]}']}))


if __name__ == "__main__":
    unittest.main()
