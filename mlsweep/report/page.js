// Datasets come column-wise, strings as indices into `levels` (see _packed): rows again here.
function unpack(data) {
  return Array.from({length: data.columns[0].length}, (_, i) => Object.fromEntries(
    data.fields.map((field, j) => {
      const value = data.columns[j][i];
      return [field, field in data.levels && value !== null ? data.levels[field][value] : value];
    })));
}
const specs = JSON.parse(document.getElementById("mlsweep-specs").textContent);
for (const [id, spec] of Object.entries(specs)) {
  for (const name in spec.datasets) spec.datasets[name] = unpack(spec.datasets[name]);
  vegaEmbed("#" + id, spec, {renderer: "svg", actions: false}).catch((error) => {
    document.getElementById(id).textContent = "This chart failed to render: " + error;
    console.error(error);
  });
}
