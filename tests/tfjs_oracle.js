// node run.js MODEL_JSON INPUT.f32 N OUTPUT_NAME OUT.f32 : TensorFlow.js's own output for N NHWC inputs
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');
(async () => {
  const [modelJson, inputFile, n, outName, outFile] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const spec = JSON.parse(fs.readFileSync(modelJson));
  const dir = path.dirname(modelJson);
  const specs = [], bufs = [];
  for (const g of spec.weightsManifest) { specs.push(...g.weights); for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p))); }
  const all = Buffer.concat(bufs);
  const handler = tf.io.fromMemory({ modelTopology: spec.modelTopology, weightSpecs: specs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), format: spec.format,
    generatedBy: spec.generatedBy, convertedBy: spec.convertedBy, signature: spec.signature,
    userDefinedMetadata: spec.userDefinedMetadata });
  const model = await tf.loadGraphModel(handler);
  const shape = model.inputs[0].shape.slice(1);
  const raw = fs.readFileSync(inputFile);
  const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [Number(n), ...shape]);
  const y = model.execute(x, outName);
  fs.writeFileSync(outFile, Buffer.from((await y.data()).buffer));
})();
