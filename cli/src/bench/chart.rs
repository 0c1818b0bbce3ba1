//! The results as a chart (`throughput.png`): rows per second of each role at each size.

use std::path::Path;

use super::Round;
use super::report::rate;

/// One plotted value of a round (rows/s), where the round has it.
pub(super) type RoundValue = dyn Fn(&Round) -> Option<f64>;

pub(super) fn draw_chart(rounds: &[Round], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    // The font is built in, so the chart never depends on what the machine has installed.
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("the built-in font could not be loaded"))?;
    let series: Vec<(&str, RGBColor, Box<RoundValue>)> = vec![
        (
            "download reference",
            BLACK,
            Box::new(|r: &Round| Some(rate(r.rows, &r.download))),
        ),
        (
            "gzip reference",
            RGBColor(120, 120, 120),
            Box::new(|r: &Round| Some(rate(r.rows, &r.gzip))),
        ),
        (
            "sfpipe upload",
            BLUE,
            Box::new(|r: &Round| Some(rate(r.rows, &r.upload))),
        ),
        (
            "sfpipe merge",
            GREEN,
            Box::new(|r: &Round| Some(rate(r.rows, &r.merge))),
        ),
        (
            "sfpipe end to end",
            RGBColor(0, 0, 120),
            Box::new(|r: &Round| Some(rate(r.rows, &r.end_to_end()))),
        ),
        (
            "simple-salesforce",
            RED,
            Box::new(|r: &Round| r.peer.as_ref().map(|p| rate(r.rows, p))),
        ),
    ];
    let max = rounds
        .iter()
        .flat_map(|r| series.iter().filter_map(move |(_, _, f)| f(r)))
        .fold(1.0, f64::max);
    let min = rounds
        .iter()
        .flat_map(|r| series.iter().filter_map(move |(_, _, f)| f(r)))
        .fold(max, f64::min);
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs: Vec<f64> = rounds.iter().map(|r| r.rows as f64).collect();
    let (x_min, x_max) = (
        xs.iter().cloned().fold(f64::MAX, f64::min) * 0.7,
        xs.iter().cloned().fold(1.0, f64::max) * 1.4,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Bench__c (50 fields): rows per second, log scales",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_min..x_max).log_scale(),
            ((min * 0.5)..(max * 2.0)).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("rows in the object")
        .y_desc("rows/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, color, value) in &series {
        let points: Vec<(f64, f64)> = rounds
            .iter()
            .filter_map(|r| value(r).map(|v| (r.rows as f64, v)))
            .collect();
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
