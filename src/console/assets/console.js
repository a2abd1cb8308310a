// evalbox console: the little the pages do in the browser. Draws charts from their data-chart
// attribute (uPlot, served by the console), refreshes the live pipeline, and loads slow sections
// (the dead-letter topic) after the page. The server escapes every fragment it sends, so swapping
// a fragment in with innerHTML inserts no markup that came from untrusted text.
/* global window, document, fetch, setTimeout, clearTimeout, setInterval */
(function () {
  'use strict';

  var PALETTE = ['#3454d1', '#1f8a4c', '#e07a00', '#8e44ad', '#c0392b', '#16a0a0', '#7f8c8d', '#d4a106'];

  function formatValue(kind, v) {
    if (v === null || v === undefined) return '—';
    if (kind === 'percent') return (v * 100).toFixed(v < 0.1 ? 1 : 0) + '%';
    if (kind === 'usd') return '$' + (v < 1 ? v.toFixed(4) : v.toFixed(2));
    return Math.round(v) === v ? String(v) : v.toFixed(2);
  }

  function drawChart(el) {
    if (typeof window.uPlot !== 'function') return;
    var spec;
    try {
      spec = JSON.parse(el.getAttribute('data-chart'));
    } catch (e) {
      el.textContent = 'This chart could not be read.';
      return;
    }
    el.textContent = '';
    if (!spec.x.length) {
      el.innerHTML = '<p class="loading">No data in this window.</p>';
      return;
    }
    var time = !spec.labels;
    var bars = spec.kind === 'bars';
    var width = Math.max(200, el.clientWidth);
    var series = [
      {
        label: time ? 'time' : 'bin',
        value: function (u, v) {
          return time ? (v === null ? '—' : new Date(v * 1000).toISOString().slice(0, 16).replace('T', ' ')) : spec.labels[v];
        },
      },
    ];
    spec.series.forEach(function (s, i) {
      var color = PALETTE[i % PALETTE.length];
      var opts = {
        label: s.label,
        stroke: color,
        width: 2,
        value: function (u, v) {
          return formatValue(spec.y, v);
        },
        spanGaps: false,
      };
      if (bars) {
        opts.fill = color + 'cc';
        opts.width = 0;
        opts.paths = window.uPlot.paths.bars({ size: [0.8 / Math.max(1, spec.series.length), 64], align: 0, gap: 1, disp: undefined });
        opts.points = { show: false };
      }
      series.push(opts);
    });
    var xAxis = time
      ? { stroke: '#667085', grid: { stroke: '#eef0f4' } }
      : {
          stroke: '#667085',
          grid: { show: false },
          values: function (u, splits) {
            return splits.map(function (v) {
              return spec.labels[v] === undefined ? '' : spec.labels[v].split('–')[0];
            });
          },
        };
    var opts = {
      width: width,
      height: spec.height || 200,
      series: series,
      scales: {
        x: spec.range
          ? {
              time: time,
              range: function () {
                return spec.range;
              },
            }
          : { time: time },
        y: {
          range: function (u, min, max) {
            return [0, spec.y === 'percent' ? Math.max(0.05, max || 0) : Math.max(1e-9, max || 1) * 1.1];
          },
        },
      },
      axes: [
        xAxis,
        {
          stroke: '#667085',
          grid: { stroke: '#eef0f4' },
          size: 64,
          incrs: spec.y === 'count' ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 1000000] : undefined,
          values: function (u, splits) {
            return splits.map(function (v) {
              return formatValue(spec.y, v);
            });
          },
        },
      ],
      legend: { show: spec.series.length > 1 || bars === false },
      cursor: { points: { show: !bars } },
    };
    if (bars && spec.series.length === 1) opts.legend.show = false;
    var data = [spec.x].concat(
      spec.series.map(function (s) {
        return s.values;
      }),
    );
    el._plot = new window.uPlot(opts, data, el);
  }

  function drawCharts(root) {
    var charts = root.querySelectorAll('.chart[data-chart]');
    for (var i = 0; i < charts.length; i++) drawChart(charts[i]);
  }

  var resizeTimer;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      var charts = document.querySelectorAll('.chart[data-chart]');
      for (var i = 0; i < charts.length; i++) {
        var el = charts[i];
        if (el._plot) el._plot.setSize({ width: Math.max(200, el.clientWidth), height: el._plot.height });
      }
    }, 150);
  });

  function fetchFragment(url) {
    return fetch(url, { credentials: 'same-origin', headers: { accept: 'text/html' } }).then(function (response) {
      if (response.status === 401) {
        window.location.href = '/login?next=' + encodeURIComponent(window.location.pathname + window.location.search);
        throw new Error('signed out');
      }
      if (!response.ok) throw new Error('HTTP ' + response.status);
      return response.text();
    });
  }

  function startRefresh(el) {
    var url = el.getAttribute('data-refresh-url');
    var seconds = Number(el.getAttribute('data-refresh-seconds')) || 5;
    var status = document.querySelector('[data-refresh-status]');
    var busy = false;
    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      el.setAttribute('aria-busy', 'true');
      fetchFragment(url)
        .then(function (text) {
          el.innerHTML = text;
          drawCharts(el);
          if (status) {
            status.className = '';
            status.textContent = 'Updated ' + new Date().toLocaleTimeString() + ' · refreshes every ' + seconds + ' s.';
          }
        })
        .catch(function (error) {
          if (status) {
            status.className = 'stale';
            status.textContent = 'Could not refresh (' + error.message + '); showing data from before. Retrying every ' + seconds + ' s.';
          }
        })
        .then(function () {
          busy = false;
          el.removeAttribute('aria-busy');
        });
    }
    setInterval(tick, seconds * 1000);
    document.addEventListener('visibilitychange', tick);
  }

  function load(el) {
    var url = el.getAttribute('data-load');
    fetchFragment(url)
      .then(function (text) {
        el.innerHTML = text;
        drawCharts(el);
      })
      .catch(function (error) {
        el.innerHTML = '';
        var box = document.createElement('div');
        box.className = 'error-state';
        box.setAttribute('role', 'alert');
        box.textContent = 'Could not load this section (' + error.message + '). Reload the page to try again.';
        el.appendChild(box);
      });
  }

  function init() {
    drawCharts(document);
    var live = document.querySelectorAll('[data-refresh-url]');
    for (var i = 0; i < live.length; i++) startRefresh(live[i]);
    var lazy = document.querySelectorAll('[data-load]');
    for (var j = 0; j < lazy.length; j++) load(lazy[j]);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
