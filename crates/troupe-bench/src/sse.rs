//! A minimal incremental `text/event-stream` parser for the gateway benchmark's clients:
//! `event:` and `data:` fields, comments (the gateway's `:keepalive`) skipped, events
//! dispatched on a blank line. Chunks may split anywhere, even inside a line.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field (`message` when absent, as browsers name it).
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds `chunk`, appending every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, out);
                // Reuse the allocation: most lines are short and similar in size.
                line.clear();
                self.line = line;
            } else {
                self.line.push(b);
            }
        }
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.event.is_some() || self.data.is_some() {
                out.push(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                    data: self.data.take().unwrap_or_default(),
                });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*text, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn frames_split_anywhere_and_comments_skipped() {
        let text = b"event: status\ndata: {\"status\":\"pending\"}\n\n:keepalive\n\nevent: fly\ndata: {\"n\":1}\n\n";
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            let mut out = Vec::new();
            p.push(&text[..cut], &mut out);
            p.push(&text[cut..], &mut out);
            assert_eq!(
                out,
                vec![
                    ev("status", "{\"status\":\"pending\"}"),
                    ev("fly", "{\"n\":1}")
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn crlf_multiline_data_and_default_name() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.push(b"data: a\r\ndata:b\r\n\r\nevent: x\n", &mut out);
        assert_eq!(out, vec![ev("message", "a\nb")]);
        p.push(b"\n", &mut out);
        assert_eq!(out[1], ev("x", ""));
    }
}
