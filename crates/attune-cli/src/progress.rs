//! Progress bars for long steps, fed by the trainer's [`Observer`] callbacks.
use attune_train::trainer::{EvalLog, Observer, StepLog};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws one bar per phase on stderr and prints a line per dev evaluation.
pub struct Bars {
    bar: Option<ProgressBar>,
    last_loss: f64,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            bar: None,
            last_loss: f64::NAN,
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub fn bar(name: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

impl Observer for Bars {
    fn phase(&mut self, name: &str, total: usize) {
        self.finish();
        self.bar = Some(bar(name, total));
    }

    fn advance(&mut self, n: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }

    fn step(&mut self, log: &StepLog) {
        // Exponential moving average keeps the displayed loss readable.
        self.last_loss = if self.last_loss.is_nan() {
            log.loss
        } else {
            0.95 * self.last_loss + 0.05 * log.loss
        };
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.1} sent/s",
                self.last_loss, log.lr, log.sentences_per_s
            ));
        }
    }

    fn eval(&mut self, log: &EvalLog) {
        let line = format!(
            "step {:>6}  dev accuracy {:.4}  macro-F1 {:.4}  loss {:.4}{}",
            log.step,
            log.accuracy,
            log.macro_f1,
            log.loss,
            if log.best { "  (kept)" } else { "" }
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
