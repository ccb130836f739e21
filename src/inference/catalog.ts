/**
 * The model catalog: every ImageNet model this project knows, by name, with its SHA-256, public download
 * (where one exists), input and preprocessing. Facts from shared/models/MANIFEST.md; a download whose
 * digest differs from `sha256` is refused.
 */
import type { ImagePreprocess, ModelSpec } from './spec.ts';

const TORCH_RGB = {
  channels: 'RGB',
  scale: 1 / 255,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
} as const;

function image(size: number, norm: Omit<ImagePreprocess, 'kind' | 'size' | 'resize'>): ImagePreprocess {
  return { kind: 'image', size, resize: Math.round(size / 0.875), ...norm };
}

const RAW_RGB = { channels: 'RGB', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] } as const;

// The ONNX model zoo serves its files through Git LFS; this address resolves LFS objects at a fixed commit.
const ZOO =
  'https://media.githubusercontent.com/media/onnx/models/4c46cd00fbdb7cd30b6c1c17ab54f2e1f4f7b177/validated/vision/classification';
const WINML =
  'https://raw.githubusercontent.com/microsoft/Windows-Machine-Learning/155b5eeb1f48b49235f31ef3a68db0bd8707ce89/SharedContent/models';
const CORAL = 'google-coral/test_data at commit 104342d2d3480b3e66203073dac24f4e2dbb4c41';

function tflite(name: string, size: number, sha256: string, bytes: number, tfliteSha: string): ModelSpec {
  return {
    name,
    sha256,
    bytes,
    input: { name: 'input', dtype: 'float32', shape: [null, 3, size, size] },
    output: { name: 'logits', dtype: 'float32', shape: [null, 1000], meaning: 'logits' },
    preprocess: image(size, RAW_RGB),
    labels: 'imagenet1k',
    source: `converted to ONNX from the TFLite file ${name.replace(/^tf2_/, '')}.tflite (sha256 ${tfliteSha}) in ${CORAL}; no public ONNX download exists, import it from a folder`,
    license: 'Apache-2.0',
  };
}

export const CATALOG: readonly ModelSpec[] = [
  {
    name: 'mobilenetv2-12-int8',
    sha256: 'cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f',
    bytes: 3_655_033,
    input: { name: 'input', dtype: 'float32', shape: [null, 3, 224, 224] },
    output: { name: 'output', dtype: 'float32', shape: [null, 1000], meaning: 'logits' },
    preprocess: image(224, TORCH_RGB),
    labels: 'imagenet1k',
    url: `${ZOO}/mobilenet/model/mobilenetv2-12-int8.onnx`,
    source: 'ONNX model zoo (onnx/models), validated/vision/classification/mobilenet/model',
    license: 'Apache-2.0',
  },
  {
    name: 'shufflenet-v2-12-qdq',
    sha256: '7c536d02e2f6af9569e5f3c7a4d8282060072119524c93c8da71e63876b4722b',
    bytes: 2_415_805,
    input: { name: 'input', dtype: 'float32', shape: [1, 3, 224, 224] },
    output: { name: 'output', dtype: 'float32', shape: [1, 1000], meaning: 'logits' },
    preprocess: image(224, TORCH_RGB),
    labels: 'imagenet1k',
    url: `${ZOO}/shufflenet/model/shufflenet-v2-12-qdq.onnx`,
    source: 'ONNX model zoo (onnx/models), validated/vision/classification/shufflenet/model',
    license: 'BSD-3-Clause',
  },
  {
    name: 'squeezenet1.1-fp16-winml',
    sha256: '21f25e3d9254af93e6218a359469fac714a017b3f9035c0f5c4acbf9a3ff7233',
    bytes: 2_484_091,
    input: { name: 'data_0', dtype: 'float16', shape: [1, 3, 224, 224] },
    output: { name: 'softmaxout_1', dtype: 'float16', shape: [1, 1000, 1, 1], meaning: 'probabilities' },
    preprocess: image(224, { channels: 'BGR', scale: 1, mean: [103.939, 116.779, 123.68], std: [1, 1, 1] }),
    labels: 'imagenet1k',
    url: `${WINML}/SqueezeNet_fp16.onnx`,
    source: 'microsoft/Windows-Machine-Learning SharedContent/models/SqueezeNet_fp16.onnx (renamed)',
    license: 'MIT',
  },
  tflite(
    'mobilenet_v1_0.25_128_quant',
    128,
    'fd4bc8894918a599f11f6e204e6e7b9948b60109128ee7c8dfc64ea75bbe093a',
    489_904,
    'cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785',
  ),
  tflite(
    'mobilenet_v1_0.5_160_quant',
    160,
    '930ab2186637a758a32f2c48c90deb23f2dde47d61a103ea84d8645456e38b05',
    1_357_171,
    '3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43',
  ),
  tflite(
    'mobilenet_v1_0.75_192_quant',
    192,
    'ae648451ccefad5ed845af8bce0676bcd314604d90b804aee5510cdf301ad518',
    2_616_873,
    '41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a',
  ),
  tflite(
    'mobilenet_v2_1.0_224_quant',
    224,
    '7e653a20fc883744506eb230f90264c9d2022be6f88a1925a65f2e163b96bc9c',
    3_566_111,
    '7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776',
  ),
  tflite(
    'tf2_mobilenet_v2_1.0_224_ptq',
    224,
    'a028c696502c3caa83a3ff7fe3ffbae4e03bb607570c3f517f25c094ee958a3d',
    3_656_745,
    '5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c',
  ),
  {
    name: 'mnist-winml',
    sha256: 'bd5891fdd7987910bfc3d8fc9a697a88e48309e26e529faa87931fba52904fe8',
    bytes: 26_627,
    input: { name: 'Input3', dtype: 'float32', shape: [1, 1, 28, 28] },
    output: { name: 'Plus214_Output_0', dtype: 'float32', shape: [1, 10], meaning: 'logits' },
    preprocess: { kind: 'grey', size: 28 },
    labels: 'mnist10',
    url: `${WINML}/mnist.onnx`,
    source: 'microsoft/Windows-Machine-Learning SharedContent/models/mnist.onnx (renamed)',
    license: 'MIT',
  },
];

export function catalogByName(name: string): ModelSpec | undefined {
  return CATALOG.find((m) => m.name === name);
}

export function catalogByDigest(sha256: string): ModelSpec | undefined {
  return CATALOG.find((m) => m.sha256 === sha256);
}
