//! Errors as one line of text, for messages that must fit on one line.

/// `e` and each of its sources, joined with `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string().lines().next().unwrap_or_default().to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
