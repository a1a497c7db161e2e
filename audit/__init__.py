"""The audit of a whole run: relevance maps on a common grid, class and confusion maps, strategy groups (SpRAy),
and how often the explanations point at the user's evidence."""
