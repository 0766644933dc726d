/* LesionKG explorer: the zoomable key-slice viewer and the graph views (Cytoscape.js, vendored).
   No network: everything this script needs is in the page or in /static. */
(function () {
  "use strict";

  function viewer(el) {
    var img = el.querySelector("img");
    var scale = 1, x = 0, y = 0, drag = null;
    function apply() { img.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")"; }
    function fit() {
      var w = img.naturalWidth || 512, h = img.naturalHeight || 512;
      scale = Math.min(el.clientWidth / w, el.clientHeight / h);
      x = (el.clientWidth - w * scale) / 2; y = (el.clientHeight - h * scale) / 2; apply();
    }
    function zoom(factor, cx, cy) {
      var next = Math.min(16, Math.max(0.2, scale * factor));
      x = cx - (cx - x) * next / scale; y = cy - (cy - y) * next / scale; scale = next; apply();
      el.dataset.scale = scale.toFixed(3);
    }
    if (img.complete) { fit(); } else { img.addEventListener("load", fit); }
    el.addEventListener("wheel", function (e) {
      e.preventDefault();
      var r = el.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    el.addEventListener("mousedown", function (e) { drag = [e.clientX - x, e.clientY - y]; el.style.cursor = "grabbing"; });
    window.addEventListener("mouseup", function () { drag = null; el.style.cursor = ""; });
    window.addEventListener("mousemove", function (e) {
      if (drag) { x = e.clientX - drag[0]; y = e.clientY - drag[1]; apply(); }
    });
    el.addEventListener("dblclick", fit);
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var f = b.dataset.zoom;
        if (f === "fit") { fit(); } else { zoom(parseFloat(f), el.clientWidth / 2, el.clientHeight / 2); }
      });
    });
  }

  var KIND_STYLE = {
    patient: { color: "#1d232b", shape: "round-rectangle" },
    study: { color: "#6b7785", shape: "round-rectangle" },
    lesion: { color: "#3b7dd8", shape: "ellipse" },
    other: { color: "#e08a2c", shape: "diamond" }
  };
  var EDGE_COLOURS = { HAS_STUDY: "#b8c0c9", HAS_LESION: "#b8c0c9", FOLLOWED_BY: "#2e9d5b", SIMILAR_TO: "#e08a2c" };

  function caption(node) {
    var p = node.properties || {};
    var label = p.lesion_id || p.study_id || p.patient_id || p.name || p.code || node.labels.join(":");
    if (p.long_axis_mm !== undefined && p.long_axis_mm !== null) { label += " · " + Math.round(p.long_axis_mm) + " mm"; }
    return String(label);
  }

  function cytoscapeGraph(el, elements, layout) {
    /* global cytoscape */
    var cy = cytoscape({
      container: el,
      elements: elements,
      wheelSensitivity: 0.3,
      style: [
        { selector: "node", style: {
          "label": "data(label)", "font-size": 9, "text-valign": "bottom", "text-margin-y": 3,
          "background-color": "data(color)", "shape": "data(shape)", "width": 18, "height": 18,
          "color": "#333", "text-wrap": "ellipsis", "text-max-width": 110 } },
        { selector: "edge", style: {
          "width": 1.6, "line-color": "data(color)", "target-arrow-color": "data(color)",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.8,
          "label": "data(label)", "font-size": 8, "color": "#777" } }
      ],
      layout: layout || { name: "cose", animate: false, randomize: false, nodeRepulsion: 9000, idealEdgeLength: 60, padding: 20 }
    });
    cy.on("tap", "node", function (e) { var href = e.target.data("href"); if (href) { window.location.href = href; } });
    el.dataset.nodes = String(cy.nodes().length);
    el.dataset.edges = String(cy.edges().length);
    el.dataset.ready = "1";
    return cy;
  }

  function patientGraph(el, data) {
    var elements = [];
    data.nodes.forEach(function (n) {
      var s = KIND_STYLE[n.kind] || KIND_STYLE.lesion;
      elements.push({ data: { id: n.id, label: n.label, href: n.href || "", color: s.color, shape: s.shape } });
    });
    data.edges.forEach(function (e, i) {
      elements.push({ data: { id: "e" + i, source: e.source, target: e.target,
        label: e.type === "SIMILAR_TO" ? (e.label || "") : "",
        color: EDGE_COLOURS[e.type] || "#999" } });
    });
    /* Patient on top, then its studies in time order, its lesions, and other patients' lesions:
       the hierarchy reads at a glance where a force layout tangles it. */
    return cytoscapeGraph(el, elements, { name: "breadthfirst", directed: true, roots: [data.nodes[0].id],
      spacingFactor: 1.1, padding: 20, animate: false });
  }

  function resultGraph(el, data) {
    var elements = [];
    data.nodes.forEach(function (n) {
      var kind = n.labels.indexOf("Patient") >= 0 ? "patient" : n.labels.indexOf("Study") >= 0 ? "study" :
        n.labels.indexOf("Lesion") >= 0 ? "lesion" : "other";
      var s = KIND_STYLE[kind];
      var p = n.properties || {};
      var href = p.lesion_id ? "/lesion/" + encodeURIComponent(p.lesion_id) :
        (kind === "patient" && p.patient_id ? "/patient/" + encodeURIComponent(p.patient_id) : "");
      elements.push({ data: { id: n.id, label: caption(n), href: href, color: s.color, shape: s.shape } });
    });
    data.relationships.forEach(function (r) {
      elements.push({ data: { id: r.id, source: r.source, target: r.target, label: r.type,
        color: EDGE_COLOURS[r.type] || "#999" } });
    });
    return cytoscapeGraph(el, elements);
  }

  function json(id) { var s = document.getElementById(id); return s ? JSON.parse(s.textContent) : null; }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".viewer").forEach(viewer);
    var g = document.getElementById("patient-graph"), d = json("patient-graph-data");
    if (g && d) { patientGraph(g, d); }
    var rg = document.getElementById("result-graph"), rd = json("result-graph-data");
    if (rg && rd) { resultGraph(rg, rd); }
  });
})();
