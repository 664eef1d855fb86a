//! "Did you mean …?" for every name a user can mistype: models, keys, arrival processes, instances.
//!
//! One rule everywhere, so a typo that gets a hint in a session file gets the same hint in a price
//! name: the closest candidate by Levenshtein distance (ignoring case), offered only when it is
//! within a third of the word's length, because a far-off "suggestion" misleads more than none.

/// The closest candidate to `word`, if it is close enough to be a plausible typo; on a tie, the
/// first in `candidates`.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_the_nearest_candidate() {
        let models = ["resnet50", "resnet152", "vgg16"];
        assert_eq!(did_you_mean("resnet5", models), Some("resnet50"));
        assert_eq!(did_you_mean("ResNet50", models), Some("resnet50"));
        assert_eq!(did_you_mean("vgg61", models), None, "two edits in five");
        assert_eq!(did_you_mean("bert", models), None);
        assert_eq!(
            did_you_mean("x", ["y"]),
            Some("y"),
            "one edit always allowed"
        );
        assert_eq!(did_you_mean("rate", std::iter::empty()), None);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(did_you_mean("ab", ["ac", "ad"]), Some("ac"));
    }
}
