// The ipywidgets embed manager typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue),
// but the site serves MathJax 3, which has MathJax.typesetPromise instead. Give every object
// assigned to window.MathJax (the config, then MathJax 3 itself) a small Hub.Queue that forwards.
(function () {
  var current = window.MathJax;
  function withHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      Object.defineProperty(mj, "Hub", {
        enumerable: false,
        value: { Queue: function () { if (window.MathJax && window.MathJax.typesetPromise) window.MathJax.typesetPromise(); } },
      });
    }
    return mj;
  }
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    enumerable: true,
    get: function () { return current; },
    set: function (v) { current = withHub(v); },
  });
  withHub(current);
})();
