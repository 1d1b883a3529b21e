//! The training-curve plot: a small self-contained SVG (loss per epoch, and the selection metric at each
//! evaluation on a second axis). Hand-written: a plotting crate would add minutes to a 2-core build for
//! two polylines.

/// One series point.
pub struct Curves<'a> {
    pub title: &'a str,
    /// (epoch, loss)
    pub loss: &'a [(f64, f64)],
    /// (epoch, metric in [0, 1])
    pub metric: &'a [(f64, f64)],
    pub metric_label: &'a str,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn svg(c: &Curves) -> String {
    let (w, h) = (720.0, 360.0);
    let (l, r, t, b) = (60.0, 60.0, 40.0, 40.0);
    let max_epoch = c.loss.iter().chain(c.metric).map(|p| p.0).fold(1.0f64, f64::max);
    let max_loss = c.loss.iter().map(|p| p.1).filter(|v| v.is_finite()).fold(1e-9f64, f64::max);
    let x = |e: f64| l + (w - l - r) * e / max_epoch;
    let yl = |v: f64| t + (h - t - b) * (1.0 - v / max_loss);
    let ym = |v: f64| t + (h - t - b) * (1.0 - v.clamp(0.0, 1.0));
    let line = |pts: &[(f64, f64)], f: &dyn Fn(f64) -> f64| -> String {
        pts.iter().filter(|p| p.1.is_finite()).map(|p| format!("{:.1},{:.1}", x(p.0), f(p.1))).collect::<Vec<_>>().join(" ")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{l}\" y=\"22\" font-size=\"14\">{}</text>\n",
        esc(c.title)
    );
    // Axes and ticks.
    s += &format!("<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", h - b, w - r, h - b);
    s += &format!("<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#1f77b4\"/>\n", h - b);
    s += &format!("<line x1=\"{}\" y1=\"{t}\" x2=\"{}\" y2=\"{}\" stroke=\"#d62728\"/>\n", w - r, w - r, h - b);
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        s += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n", x(f * max_epoch), h - b + 16.0, f * max_epoch);
        s += &format!("<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1f77b4\">{:.3}</text>\n", l - 4.0, yl(f * max_loss) + 4.0, f * max_loss);
        s += &format!("<text x=\"{}\" y=\"{:.1}\" fill=\"#d62728\">{:.2}</text>\n", w - r + 4.0, ym(f) + 4.0, f);
    }
    s += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n", (l + w - r) / 2.0, h - 6.0);
    s += &format!("<text x=\"{}\" y=\"{}\" fill=\"#1f77b4\">loss</text>\n", l, t - 6.0);
    s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#d62728\">{}</text>\n", w - r, t - 6.0, esc(c.metric_label));
    s += &format!("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n", line(c.loss, &yl));
    s += &format!("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"{}\"/>\n", line(c.metric, &ym));
    for p in c.metric {
        s += &format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#d62728\"/>\n", x(p.0), ym(p.1));
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_both_series_and_escapes_the_title() {
        let loss = [(0.0, 2.0), (1.0, 1.0), (2.0, f64::NAN)];
        let metric = [(1.0, 0.5), (2.0, 0.75)];
        let s = svg(&Curves { title: "a<b", loss: &loss, metric: &metric, metric_label: "dev H@1" });
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a&lt;b"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<circle").count(), 2);
        // The NaN loss point is dropped, not printed.
        assert!(!s.contains("NaN"));
    }
}
