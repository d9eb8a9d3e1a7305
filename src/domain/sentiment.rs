//! VADER sentiment: the compound score and Amber's three labels (±0.25 thresholds).

use std::sync::OnceLock;

use bincode::{Decode, Encode};

/// Compound score at or above which a text is `Positive`.
pub const POSITIVE_THRESHOLD: f64 = 0.25;
/// Compound score at or below which a text is `Negative`.
pub const NEGATIVE_THRESHOLD: f64 = -0.25;

/// The label shown for a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Sentiment {
    Positive,
    Neutral,
    Negative,
}

impl Sentiment {
    /// The label for a VADER compound score.
    pub fn from_score(score: f64) -> Sentiment {
        if score >= POSITIVE_THRESHOLD {
            Sentiment::Positive
        } else if score <= NEGATIVE_THRESHOLD {
            Sentiment::Negative
        } else {
            Sentiment::Neutral
        }
    }

    /// The label as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Positive => "Positive",
            Sentiment::Neutral => "Neutral",
            Sentiment::Negative => "Negative",
        }
    }

    /// Parses the API spelling, case-insensitively.
    pub fn parse(s: &str) -> Option<Sentiment> {
        match s.to_ascii_lowercase().as_str() {
            "positive" => Some(Sentiment::Positive),
            "neutral" => Some(Sentiment::Neutral),
            "negative" => Some(Sentiment::Negative),
            _ => None,
        }
    }
}

fn analyzer() -> &'static vader_sentiment::SentimentIntensityAnalyzer<'static> {
    // Building the analyzer parses VADER's lexicon; do it once per process.
    static ANALYZER: OnceLock<vader_sentiment::SentimentIntensityAnalyzer<'static>> =
        OnceLock::new();
    ANALYZER.get_or_init(vader_sentiment::SentimentIntensityAnalyzer::new)
}

/// Scores a text with VADER and returns the compound score and its label.
pub fn analyze(text: &str) -> (f64, Sentiment) {
    let scores = analyzer().polarity_scores(text);
    let compound = scores.get("compound").copied().unwrap_or(0.0);
    let compound = if compound.is_finite() { compound } else { 0.0 };
    (compound, Sentiment::from_score(compound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_text_is_positive_and_angry_text_negative() {
        assert_eq!(
            analyze("I love this, it is wonderful and great!").1,
            Sentiment::Positive
        );
        assert_eq!(
            analyze("This is terrible, awful and I hate it").1,
            Sentiment::Negative
        );
        assert_eq!(analyze("The meeting is on Tuesday").1, Sentiment::Neutral);
    }

    #[test]
    fn thresholds_are_inclusive() {
        assert_eq!(Sentiment::from_score(0.25), Sentiment::Positive);
        assert_eq!(Sentiment::from_score(-0.25), Sentiment::Negative);
        assert_eq!(Sentiment::from_score(0.2499), Sentiment::Neutral);
    }

    #[test]
    fn empty_and_odd_text_do_not_panic() {
        for text in ["", "   ", "\u{0}", "😀😀😀", &"a".repeat(10_000)] {
            let (score, _) = analyze(text);
            assert!(score.is_finite());
        }
    }
}
