// Injected into a copy of the report by test/report.sh (the report itself
// has no scripts): after layout, every chart's texts must lie inside its
// viewBox, and every chart must draw something.  The verdict is written
// into the page as a pre element with id verdict, which chromium --dump-dom
// prints.
window.addEventListener('load', function () {
	var out = [];
	document.querySelectorAll('svg.chart').forEach(function (svg) {
		var name = svg.getAttribute('data-chart');
		var vb = svg.viewBox.baseVal;
		var shapes = svg.querySelectorAll('rect, circle, polyline, polygon, line').length;
		var texts = svg.querySelectorAll('text');
		var over = 0;
		texts.forEach(function (t) {
			var b = t.getBBox();
			if (b.x < vb.x - 0.5 || b.y < vb.y - 0.5 || b.x + b.width > vb.x + vb.width + 0.5 || b.y + b.height > vb.y + vb.height + 0.5)
				over++;
		});
		out.push(name + ' shapes=' + shapes + ' texts=' + texts.length + ' overflowing=' + over);
	});
	var pre = document.createElement('pre');
	pre.id = 'verdict';
	pre.textContent = out.join('\n');
	document.body.appendChild(pre);
});
