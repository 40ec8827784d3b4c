//! Reading scenario files (the language of ../shared/conformance/FORMAT.md).

/// One step: a command, its arguments and payload, and where it came from.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of the `>` line.
    pub line: usize,
    /// The most recent comment before the step.
    pub name: String,
    /// The command word.
    pub command: String,
    /// The arguments after the command.
    pub args: Vec<String>,
    /// The payload lines, joined with newlines.
    pub payload: String,
}

/// Splits a scenario file into steps.
pub fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut name = String::new();
    let mut open = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            open = false;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            name = comment.trim().to_string();
            continue;
        }
        if let Some(command) = line.strip_prefix('>') {
            let mut words = command.split_whitespace().map(str::to_string);
            steps.push(Step {
                line: index + 1,
                name: name.clone(),
                command: words.next().unwrap_or_default(),
                args: words.collect(),
                payload: String::new(),
            });
            open = true;
            continue;
        }
        if open && let Some(step) = steps.last_mut() {
            if !step.payload.is_empty() {
                step.payload.push('\n');
            }
            step.payload.push_str(line);
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_comments_and_payloads() {
        let steps = super::parse(
            "# one\n> put a@x b\nBEGIN:VCALENDAR\nEND:VCALENDAR\n\n> send\n\n# two\n> expect\nNothingToSend\n",
        );
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].args, ["a@x", "b"]);
        assert_eq!(steps[0].payload, "BEGIN:VCALENDAR\nEND:VCALENDAR");
        assert_eq!(steps[1].payload, "");
        assert_eq!(steps[2].name, "two");
        assert_eq!(steps[2].line, 9);
    }
}
