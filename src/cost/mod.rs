//! Prices, cost per million inferences, dedicated baselines and the co-location frontier.
