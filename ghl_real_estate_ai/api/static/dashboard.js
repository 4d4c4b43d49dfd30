// The /dashboard charts: Chart.js (served from /static, no CDN) over the page's embedded JSON.
// A click on a bar opens the traces behind it.
(function () {
  var data = JSON.parse(document.getElementById('dashboard-data').textContent);
  var ok = '#2f6fde', bad = '#d93025';
  window.jorgeCharts = {};

  function barChart(id, rows, value, label, format, limit) {
    var canvas = document.getElementById(id);
    if (!canvas || typeof Chart === 'undefined') { return; }
    var datasets = [{
      label: label,
      data: rows.map(value),
      backgroundColor: rows.map(function (r) { return r.breached ? bad : ok; })
    }];
    var chart = new Chart(canvas, {
      type: 'bar',
      data: { labels: rows.map(function (r) { return r.label; }), datasets: datasets },
      options: {
        indexAxis: 'y',
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: function (ctx) { return format(ctx.parsed.x, rows[ctx.dataIndex]); } } }
        },
        scales: {
          x: {
            beginAtZero: true,
            suggestedMax: limit ? limit * 1.1 : undefined,
            ticks: { callback: function (v) { return format(v); } }
          }
        },
        onHover: function (evt, elements) {
          evt.native.target.style.cursor = elements.length ? 'pointer' : 'default';
        },
        onClick: function (evt, elements) {
          if (elements.length) { window.location.href = rows[elements[0].index].href; }
        }
      }
    });
    window.jorgeCharts[id] = chart;
  }

  var ms = function (v) { return Number(v).toFixed(1) + ' ms'; };
  var pct = function (v) { return (Number(v) * 100).toFixed(2) + '%'; };
  barChart('chart-routes', data.routes, function (r) { return r.avg_ms; }, 'average ms', ms);
  barChart('chart-nodes', data.nodes, function (r) { return r.p95_ms; }, 'P95 ms', ms,
    data.thresholds.p95_latency_ms);
  barChart('chart-bots', data.bots, function (r) { return r.rate; }, 'error rate', pct,
    data.thresholds.trace_error_rate);
})();
