/*
 * The recording page's waveform (see _waveform_player.html): one lane per channel drawn from
 * audiowaveform v2 peaks, a band below coloured by who spoke (Flex Insights' colours), a
 * playhead following the audio, and a click anywhere to play from there.
 *
 * Drawn on a canvas by hand rather than with wavesurfer.js or peaks.js: the portal already
 * sends min/max per pixel, so drawing is a loop over them, with no library to vendor, audit
 * and keep up to date, and nothing that fetches or decodes the audio a second time.
 */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("waveform-data").textContent);
  var colours = JSON.parse(document.getElementById("waveform-colours").textContent);
  var canvas = document.getElementById("waveform-canvas");
  var audio = document.getElementById("waveform-audio");
  var status = document.getElementById("waveform-status");
  var peaks = data.peaks;
  var duration = data.summary.duration_seconds;
  var roles = data.summary.channel_roles || [];
  var BAND = 16;
  var GAP = 6;
  var ctx = canvas.getContext("2d");

  function laneColour(channel) {
    var role = roles[channel] || "speech";
    return colours[role] || colours.speech;
  }

  function draw() {
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth;
    var height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var channels = peaks.channels;
    var laneHeight = (height - BAND - GAP * channels) / channels;
    var scale = Math.pow(2, peaks.bits - 1);
    var perColumn = peaks.length / width;
    for (var channel = 0; channel < channels; channel++) {
      var top = channel * (laneHeight + GAP);
      var middle = top + laneHeight / 2;
      ctx.fillStyle = "rgba(127,127,127,0.08)";
      ctx.fillRect(0, top, width, laneHeight);
      ctx.fillStyle = laneColour(channel);
      for (var x = 0; x < width; x++) {
        var first = Math.floor(x * perColumn);
        var last = Math.max(first + 1, Math.floor((x + 1) * perColumn));
        var low = 0;
        var high = 0;
        for (var pixel = first; pixel < last && pixel < peaks.length; pixel++) {
          var at = (pixel * channels + channel) * 2;
          low = Math.min(low, peaks.data[at]);
          high = Math.max(high, peaks.data[at + 1]);
        }
        var y0 = middle - (high / scale) * (laneHeight / 2);
        var y1 = middle - (low / scale) * (laneHeight / 2);
        ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
      }
      ctx.fillStyle = "#555";
      ctx.font = "11px sans-serif";
      ctx.fillText(roles[channel] || ("channel " + (channel + 1)), 4, top + 12);
    }
    var bandTop = height - BAND;
    data.segments.forEach(function (segment) {
      ctx.fillStyle = colours[segment.kind] || "#999";
      var x0 = (segment.start / duration) * width;
      var x1 = (segment.end / duration) * width;
      ctx.fillRect(x0, bandTop, Math.max(1, x1 - x0), BAND);
    });
    if (audio && !isNaN(audio.currentTime)) {
      var head = (audio.currentTime / duration) * width;
      ctx.fillStyle = "#111";
      ctx.fillRect(head, 0, 2, height);
    }
    canvas.dataset.drawn = String(peaks.length);
  }

  canvas.addEventListener("click", function (event) {
    var box = canvas.getBoundingClientRect();
    var fraction = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    if (!audio) return;
    audio.currentTime = fraction * duration;
    draw();
  });
  if (audio) {
    audio.addEventListener("seeked", function () {
      status.textContent = "Seeked to " + audio.currentTime.toFixed(2) + " s";
      status.dataset.seeked = audio.currentTime.toFixed(2);
      draw();
    });
    audio.addEventListener("timeupdate", draw);
  }
  window.addEventListener("resize", draw);
  draw();
})();
