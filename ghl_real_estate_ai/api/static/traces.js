// The trace waterfall: a click (or Enter/Space) on a span row shows or hides its attributes.
document.querySelectorAll('.span-row').forEach(function (row) {
  function toggle() {
    var detail = document.getElementById('detail-' + row.dataset.spanId);
    detail.hidden = !detail.hidden;
    row.classList.toggle('selected', !detail.hidden);
    row.setAttribute('aria-expanded', String(!detail.hidden));
  }
  row.addEventListener('click', toggle);
  row.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); }
  });
});
