// kernelop's native runtime: a CUDA impl, registered with PyTorch's dispatcher, that interprets
// an op's launch program (written by program.py from the launch plan) with no Python per call.
//
// Per call: the tensor checks of the Python launcher, contiguous copies, the launch values
// (evaluated from the program for the call's shapes, checked once per distinct shape and
// remembered), the outputs' allocation, one cuLaunchKernel on PyTorch's current stream, and the
// copy back of arguments written in place. Refusals carry the Python path's messages: the
// op-specific text comes rendered in the program, with placeholders for call values.
//
// It needs no CUDA headers: the driver is opened at run time (libcuda.so.1), and PyTorch's
// current stream is read through the AOTInductor C shim of the loaded libtorch_cuda. So it
// builds wherever a C++ compiler and the torch wheel's headers are.
//
// Loaded from a bundle (beside a kernelop_ops.program file), it defines and registers the
// bundle's ops by itself: torch.ops.load_library, or dlopen from a C++ program, is enough.

#ifndef KERNELOP_PROGRAM_FORMAT
#error "build with -DKERNELOP_PROGRAM_FORMAT=<kernelop.native.program.FORMAT> (native/build.py does)"
#endif
#include <ATen/core/Tensor.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <torch/library.h>

#include <dlfcn.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace kernelop_native {

// -- refusals -------------------------------------------------------------------------------

enum class Kind { Value, Type, Runtime };

struct Refusal {
  Kind kind;
  std::string message;  // without the "kernelop.call(op): " prefix
};

struct DivisionByZero {};

[[noreturn]] void refuse(const std::string& message, Kind kind = Kind::Value) { throw Refusal{kind, message}; }

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string repr(const std::string& name) { return "'" + name + "'"; }

// Python's tuple and list reprs: (2, 3), (4,), (), [(2, 3), (4,)].
std::string py_tuple(const std::vector<int64_t>& values) {
  std::string out = "(";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + (values.size() == 1 ? ",)" : ")");
}

using Shapes = std::vector<std::vector<int64_t>>;

std::string py_shapes(const Shapes& shapes) {
  std::string out = "[";
  for (size_t i = 0; i < shapes.size(); ++i) out += (i ? ", " : "") + py_tuple(shapes[i]);
  return out + "]";
}

std::string py_float(double value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

// -- dtypes as Python names them ------------------------------------------------------------

const std::vector<std::pair<std::string, c10::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, c10::ScalarType>> names = {
      {"float32", c10::ScalarType::Float},       {"float64", c10::ScalarType::Double},
      {"float16", c10::ScalarType::Half},        {"bfloat16", c10::ScalarType::BFloat16},
      {"int8", c10::ScalarType::Char},           {"uint8", c10::ScalarType::Byte},
      {"int16", c10::ScalarType::Short},         {"int32", c10::ScalarType::Int},
      {"int64", c10::ScalarType::Long},          {"bool", c10::ScalarType::Bool},
      {"complex32", c10::ScalarType::ComplexHalf}, {"complex64", c10::ScalarType::ComplexFloat},
      {"complex128", c10::ScalarType::ComplexDouble}, {"uint16", c10::ScalarType::UInt16},
      {"uint32", c10::ScalarType::UInt32},       {"uint64", c10::ScalarType::UInt64},
      {"float8_e4m3fn", c10::ScalarType::Float8_e4m3fn}, {"float8_e5m2", c10::ScalarType::Float8_e5m2},
      {"float8_e4m3fnuz", c10::ScalarType::Float8_e4m3fnuz}, {"float8_e5m2fnuz", c10::ScalarType::Float8_e5m2fnuz},
      {"qint8", c10::ScalarType::QInt8},         {"quint8", c10::ScalarType::QUInt8},
      {"qint32", c10::ScalarType::QInt32},
  };
  return names;
}

std::string dtype_name(c10::ScalarType type) {
  for (const auto& [name, value] : dtype_names())
    if (value == type) return name;
  return c10::toString(type);
}

std::string torch_dtype(c10::ScalarType type) { return "torch." + dtype_name(type); }

std::vector<c10::ScalarType> parse_dtypes(const std::string& list) {
  std::vector<c10::ScalarType> out;
  if (list == "-") return out;
  std::stringstream stream(list);
  for (std::string name; std::getline(stream, name, ',');)
    for (const auto& [known, value] : dtype_names())
      if (known == name) out.push_back(value);
  return out;
}

bool contains(const std::vector<c10::ScalarType>& types, c10::ScalarType type) {
  for (auto t : types)
    if (t == type) return true;
  return false;
}

// -- the program ----------------------------------------------------------------------------

std::string decode(const std::string& token) {
  if (token == "%") return "";
  std::string out;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '%' && i + 2 < token.size()) {
      out += static_cast<char>(std::stoi(token.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += token[i];
    }
  }
  return out;
}

struct Tokens {
  std::istringstream stream;
  std::string line;
  explicit Tokens(const std::string& text) : stream(text), line(text) {}
  std::string word() {
    std::string token;
    if (!(stream >> token)) throw std::runtime_error("the line ends early: " + line);
    return token;
  }
  std::string text() { return decode(word()); }
  int64_t integer() { return std::stoll(word()); }
};

struct Node {
  std::string op;  // c, a, n, or add sub mul floordiv cdiv min max
  int64_t value = 0;
  int side = 0, index = 0;
  int64_t axis = 0;
  std::string message;  // axis out of range, with {rank}
  int a = -1, b = -1;
};

struct Tree {
  std::vector<Node> nodes;  // nodes[0] is the root
};

int parse_node(Tokens& in, Tree& tree) {
  Node node;
  node.op = in.word();
  int at = static_cast<int>(tree.nodes.size());
  tree.nodes.push_back(node);
  if (node.op == "c") {
    tree.nodes[at].value = in.integer();
  } else if (node.op == "a" || node.op == "n") {
    tree.nodes[at].side = in.word() == "out";
    tree.nodes[at].index = static_cast<int>(in.integer());
    if (node.op == "a") {
      tree.nodes[at].axis = in.integer();
      tree.nodes[at].message = in.text();
    }
  } else {
    int a = parse_node(in, tree);
    int b = parse_node(in, tree);
    tree.nodes[at].a = a;
    tree.nodes[at].b = b;
  }
  return at;
}

Tree parse_tree(Tokens& in) {
  Tree tree;
  parse_node(in, tree);
  return tree;
}

// Python's floor division and its ceiling counterpart.
int64_t floordiv(int64_t a, int64_t b) {
  if (b == 0) throw DivisionByZero{};
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t python_mod(int64_t a, int64_t b) {
  if (b == 0) throw DivisionByZero{};
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

struct ShapeView {
  const Shapes* in;
  const Shapes* out;
  const std::vector<int64_t>& of(int side, int index) const { return (side ? *out : *in)[index]; }
};

int64_t normalized(const Node& node, int64_t rank) {
  int64_t bound = std::max<int64_t>(rank, 1);
  if (rank == 0 || node.axis < -bound || node.axis >= bound)
    refuse(replace_all(node.message, "{rank}", std::to_string(rank)));
  return ((node.axis % bound) + bound) % bound;
}

// The rank pass: every axis leaf in range for the call's ranks (the Python path resolves axes
// before it evaluates anything, so its refusals come in this order).
void check_axes(const Tree& tree, int at, const ShapeView& shapes) {
  const Node& node = tree.nodes[at];
  if (node.op == "a") {
    normalized(node, static_cast<int64_t>(shapes.of(node.side, node.index).size()));
  } else if (node.a >= 0) {
    check_axes(tree, node.a, shapes);
    check_axes(tree, node.b, shapes);
  }
}

int64_t evaluate(const Tree& tree, int at, const ShapeView& shapes) {
  const Node& node = tree.nodes[at];
  if (node.op == "c") return node.value;
  if (node.op == "a") {
    const auto& shape = shapes.of(node.side, node.index);
    return shape[normalized(node, static_cast<int64_t>(shape.size()))];
  }
  if (node.op == "n") {
    int64_t n = 1;
    for (int64_t size : shapes.of(node.side, node.index)) n *= size;
    return n;
  }
  int64_t a = evaluate(tree, node.a, shapes), b = evaluate(tree, node.b, shapes);
  if (node.op == "add") return a + b;
  if (node.op == "sub") return a - b;
  if (node.op == "mul") return a * b;
  if (node.op == "floordiv") return floordiv(a, b);
  if (node.op == "cdiv") return -floordiv(-a, b);
  if (node.op == "min") return std::min(a, b);
  return std::max(a, b);
}

struct TensorParam {
  std::string name;
  int position = 0;
  bool optional = false, mutates = false;
  std::string declared = "any";  // any | fixed | type
  c10::ScalarType fixed = c10::ScalarType::Undefined;
  std::string type_name;
  std::vector<c10::ScalarType> type_dtypes;
  bool has_allowed = false;
  std::vector<c10::ScalarType> allowed;
  std::string pointer_note;
};

struct ScalarParam {
  std::string name;
  int position = 0;
  std::string py_type;
};

struct Slot {
  std::string kind, ctype;
  int index = 0;
  bool integer = false;
  __int128 low = 0, high = 0;
  double float_max = INFINITY;  // a finite float32's bound; infinity for other types
  std::string misfit;           // a scalar or extra outside the range, with {value}
};

struct ReduceDims {
  std::vector<int64_t> dims;
  std::vector<std::string> out_of_range;  // per dim, with {rank}
  std::string twice;                      // with {rank}
};

struct Output {
  std::string name, negative;  // negative: the message of a negative size, with {shape} {shapes}
  int dtype_source = 0;
  std::string init = "none";  // none | fill | copy
  bool fill_is_int = false;
  double fill_float = 0;
  int64_t fill_int = 0;
  int copy_of = -1;
  std::string kind;  // like | sizes | reduce
  int source = -1;
  bool like_input = false, keepdim = false;
  std::vector<Tree> sizes;
  ReduceDims reduce;
};

struct Check {
  std::string rule;
  Tree value;
  bool other_is_int = true;
  int64_t other_int = 0;
  Tree other;
  std::string failure;  // with {value} {other} {shapes}
};

struct Limits {
  int64_t max_threads = 1024, max_shared = 0;
  int64_t grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};
  std::string nd_hint;
  std::set<std::string> sticky;  // faults after which the context is unusable
};

struct Binary {
  std::string cubin, symbol;
};

struct Function {
  void* handle = nullptr;
  int64_t max_threads = 0, max_dynamic_shared = 0;
};

struct Values {
  int64_t grid[3], block[3], shared;
  std::vector<int64_t> extras;
  Shapes outputs;
};

struct Op {
  std::string name, kernel_repr, schema;
  std::string not_built;  // bundles: the message of a GPU the bundle has no kernels for ({built}, {arch})
  int first_required = 0, num_outputs = 0;
  bool shared_opt_in = false, nd = false;
  std::vector<TensorParam> tensors;
  std::vector<ScalarParam> scalars;  // by position order of appearance
  std::vector<int> scalar_at;        // op position -> index in scalars, -1 for tensors
  std::vector<std::vector<int>> groups;
  std::vector<Slot> slots;
  std::vector<std::pair<std::string, Tree>> extras;
  std::vector<Output> outputs;
  std::string geometry;  // elementwise | reduction | launch
  bool flat = true;
  int target_side = 1, target_index = 0, tiled = 1;
  int64_t block[3] = {1, 1, 1};
  int64_t shared_const = 0;
  std::string nd_problem;
  int reduced_input = 0;
  ReduceDims reduction;
  std::vector<Tree> launch;  // grid 3, block 3, shared
  std::vector<Check> checks;

  std::mutex mutex;
  std::map<std::string, Binary> binaries;         // key "|" arch
  std::map<std::pair<int, std::string>, Function> functions;  // (device, key)
  std::map<std::pair<int, std::string>, std::map<std::vector<int64_t>, std::shared_ptr<const Values>>> memo;
  std::vector<std::unique_ptr<torch::Library>> libraries;
};

Limits& limits() {
  static Limits value;
  return value;
}

void parse_reduce_dims(Tokens& in, ReduceDims& out) {
  int64_t n = in.integer();
  for (int64_t i = 0; i < n; ++i) {
    out.dims.push_back(in.integer());
    out.out_of_range.push_back(in.text());
  }
  out.twice = in.text();
}

__int128 parse_int128(const std::string& text) {
  __int128 value = 0;
  bool negative = !text.empty() && text[0] == '-';
  for (size_t i = negative; i < text.size(); ++i) value = value * 10 + (text[i] - '0');
  return negative ? -value : value;
}

std::unique_ptr<Op> parse_op(Tokens& head, std::istream& lines) {
  auto op = std::make_unique<Op>();
  op->name = head.text();
  op->kernel_repr = head.text();
  op->first_required = static_cast<int>(head.integer());
  op->num_outputs = static_cast<int>(head.integer());
  op->shared_opt_in = head.integer();
  op->nd = head.integer();
  for (std::string line; std::getline(lines, line);) {
    Tokens in(line);
    std::string what = in.word();
    if (what == "end") return op;
    if (what == "schema") {
      op->schema = in.text();
      op->not_built = in.text();
    } else if (what == "tensor") {
      TensorParam t;
      t.name = in.text();
      t.position = static_cast<int>(in.integer());
      t.optional = in.integer();
      t.mutates = in.integer();
      std::string declared = in.word();
      if (declared.rfind("fixed:", 0) == 0) {
        t.declared = "fixed";
        t.fixed = parse_dtypes(declared.substr(6)).at(0);
      } else if (declared.rfind("type:", 0) == 0) {
        t.declared = "type";
        auto colon = declared.find(':', 5);
        t.type_name = decode(declared.substr(5, colon - 5));
        t.type_dtypes = parse_dtypes(declared.substr(colon + 1));
      }
      std::string allowed = in.word();
      t.has_allowed = allowed != "-";
      t.allowed = parse_dtypes(allowed);
      t.pointer_note = in.text();
      op->scalar_at.resize(std::max<size_t>(op->scalar_at.size(), t.position + 1), -1);
      op->tensors.push_back(t);
    } else if (what == "scalar") {
      ScalarParam s;
      s.name = in.text();
      s.position = static_cast<int>(in.integer());
      s.py_type = in.word();
      op->scalar_at.resize(std::max<size_t>(op->scalar_at.size(), s.position + 1), -1);
      op->scalar_at[s.position] = static_cast<int>(op->scalars.size());
      op->scalars.push_back(s);
    } else if (what == "group") {
      std::vector<int> group;
      for (std::string token; in.stream >> token;) group.push_back(std::stoi(token));
      op->groups.push_back(group);
    } else if (what == "slot") {
      Slot s;
      s.kind = in.word();
      s.index = static_cast<int>(in.integer());
      s.ctype = in.word();
      std::string low = in.word(), high = in.word(), float_max = in.word();
      s.integer = low != "-";
      if (s.integer) {
        s.low = parse_int128(low);
        s.high = parse_int128(high);
      }
      if (float_max != "-") s.float_max = std::stod(float_max);
      s.misfit = in.text();
      op->slots.push_back(s);
    } else if (what == "extra") {
      std::string label = in.text();
      op->extras.emplace_back(label, parse_tree(in));
    } else if (what == "output") {
      Output o;
      o.name = in.text();
      o.dtype_source = static_cast<int>(in.integer());
      std::string init = in.word();
      if (init.rfind("copy:", 0) == 0) {
        o.init = "copy";
        o.copy_of = std::stoi(init.substr(5));
      } else if (init.rfind("fill:", 0) == 0) {
        o.init = "fill";
        o.fill_is_int = init[5] == 'i';
        if (o.fill_is_int) o.fill_int = std::stoll(init.substr(6));
        else o.fill_float = std::stod(init.substr(6));
      }
      o.negative = in.text();
      o.kind = in.word();
      if (o.kind == "like") {
        o.source = static_cast<int>(in.integer());
        o.like_input = in.integer();
      } else if (o.kind == "sizes") {
        int64_t n = in.integer();
        for (int64_t i = 0; i < n; ++i) o.sizes.push_back(parse_tree(in));
      } else {
        o.source = static_cast<int>(in.integer());
        o.keepdim = in.integer();
        parse_reduce_dims(in, o.reduce);
      }
      op->outputs.push_back(std::move(o));
    } else if (what == "geometry") {
      op->geometry = in.word();
      if (op->geometry == "elementwise") {
        op->flat = in.word() == "flat";
        op->target_side = in.word() == "out";
        op->target_index = static_cast<int>(in.integer());
        op->tiled = static_cast<int>(in.integer());
        for (auto& b : op->block) b = in.integer();
        op->shared_const = in.integer();
        op->nd_problem = in.text();
      } else if (op->geometry == "reduction") {
        op->reduced_input = static_cast<int>(in.integer());
        op->block[0] = in.integer();
        op->shared_const = in.integer();
        parse_reduce_dims(in, op->reduction);
      } else {
        for (int i = 0; i < 7; ++i) op->launch.push_back(parse_tree(in));
      }
    } else if (what == "check") {
      Check c;
      c.rule = in.word();
      c.value = parse_tree(in);
      c.other_is_int = in.word() == "i";
      if (c.other_is_int) c.other_int = in.integer();
      else c.other = parse_tree(in);
      c.failure = in.text();
      op->checks.push_back(std::move(c));
    } else {
      throw std::runtime_error("unknown line: " + line);
    }
  }
  throw std::runtime_error("op " + op->name + " has no end line");
}

// -- the launch values ----------------------------------------------------------------------

std::set<int64_t> reduced_axes(const ReduceDims& reduce, int64_t rank) {
  std::set<int64_t> axes;
  int64_t bound = std::max<int64_t>(rank, 1);
  for (size_t i = 0; i < reduce.dims.size(); ++i) {
    int64_t d = reduce.dims[i];
    if (d < -bound || d >= bound) refuse(replace_all(reduce.out_of_range[i], "{rank}", std::to_string(rank)));
    axes.insert(((d % bound) + bound) % bound);
  }
  if (axes.size() != reduce.dims.size()) refuse(replace_all(reduce.twice, "{rank}", std::to_string(rank)));
  return axes;
}

// Every axis the extras and geometry name, resolved for these ranks (outputs' axes resolve
// against shapes of the outputs' ranks): the refusals of LaunchPlan.launch_dims, in its order.
void check_launch_axes(const Op& op, const Shapes& in, const Shapes& out_ranked) {
  ShapeView view{&in, &out_ranked};
  for (const auto& [label, tree] : op.extras) check_axes(tree, 0, view);
  if (op.geometry == "elementwise" && !op.flat) {
    int64_t rank = static_cast<int64_t>(view.of(op.target_side, op.target_index).size());
    if (rank < op.tiled) refuse(replace_all(op.nd_problem, "{rank}", std::to_string(rank)));
  } else if (op.geometry == "reduction") {
    reduced_axes(op.reduction, static_cast<int64_t>(in[op.reduced_input].size()));
  } else if (op.geometry == "launch") {
    for (const auto& tree : op.launch) check_axes(tree, 0, view);
  }
}

std::vector<int64_t> output_shape(const Output& o, const Shapes& in) {
  ShapeView view{&in, &in};
  std::vector<int64_t> shape;
  if (o.kind == "sizes") {
    for (const auto& tree : o.sizes) shape.push_back(evaluate(tree, 0, view));
    return shape;
  }
  const auto& source = in[o.source];
  if (o.kind == "like") return source;
  auto axes = reduced_axes(o.reduce, static_cast<int64_t>(source.size()));
  for (size_t a = 0; a < source.size(); ++a) {
    bool reduced = axes.count(static_cast<int64_t>(a));
    if (!reduced) shape.push_back(source[a]);
    else if (o.keepdim) shape.push_back(1);
  }
  return shape;
}

int64_t product(const std::vector<int64_t>& sizes, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to; ++i) n *= sizes[i];
  return n;
}

Values launch_values(const Op& op, const Shapes& in, Shapes& out) {
  Values v{};
  out.clear();
  for (const auto& o : op.outputs) out.push_back(output_shape(o, in));
  ShapeView view{&in, &out};
  if (op.geometry == "elementwise") {
    const auto& dims = view.of(op.target_side, op.target_index);
    for (int i = 0; i < 3; ++i) v.block[i] = op.block[i];
    if (op.flat) {
      v.grid[0] = -floordiv(-product(dims, 0, dims.size()), op.block[0]);
      v.grid[1] = v.grid[2] = 1;
    } else {
      size_t rank = dims.size();
      int64_t tiles[3] = {1, 1, 1};
      for (int i = 0; i < op.tiled; ++i) tiles[i] = -floordiv(-dims[rank - 1 - i], op.block[i]);
      int64_t leading = product(dims, 0, rank - op.tiled);
      v.grid[0] = tiles[0];
      v.grid[1] = op.tiled >= 2 ? tiles[1] : 1;
      v.grid[2] = op.tiled == 3 ? tiles[2] * leading : leading;
    }
    v.shared = op.shared_const;
  } else if (op.geometry == "reduction") {
    const auto& source = in[op.reduced_input];
    auto axes = reduced_axes(op.reduction, static_cast<int64_t>(source.size()));
    int64_t kept = 1;
    for (size_t a = 0; a < source.size(); ++a)
      if (!axes.count(static_cast<int64_t>(a))) kept *= source[a];
    v.grid[0] = kept;
    v.grid[1] = v.grid[2] = 1;
    v.block[0] = op.block[0];
    v.block[1] = v.block[2] = 1;
    v.shared = op.shared_const;
  } else {
    for (int i = 0; i < 3; ++i) v.grid[i] = evaluate(op.launch[i], 0, view);
    for (int i = 0; i < 3; ++i) v.block[i] = evaluate(op.launch[3 + i], 0, view);
    v.shared = evaluate(op.launch[6], 0, view);
  }
  for (const auto& [label, tree] : op.extras) v.extras.push_back(evaluate(tree, 0, view));
  v.outputs = out;
  return v;
}

void check_requirements(const Op& op, const Shapes& in) {
  if (op.checks.empty()) return;
  ShapeView view{&in, &in};
  for (const auto& c : op.checks) {
    check_axes(c.value, 0, view);
    if (!c.other_is_int) check_axes(c.other, 0, view);
  }
  std::vector<std::pair<int64_t, int64_t>> values;
  try {
    for (const auto& c : op.checks)
      values.emplace_back(evaluate(c.value, 0, view), c.other_is_int ? c.other_int : evaluate(c.other, 0, view));
  } catch (const DivisionByZero&) {
    refuse("a requirement divides by zero for input shapes " + py_shapes(in));
  }
  for (size_t i = 0; i < op.checks.size(); ++i) {
    const auto& c = op.checks[i];
    auto [value, other] = values[i];
    bool holds = c.rule == "divisible" ? python_mod(value, other) == 0
               : c.rule == "min"       ? value >= other
               : c.rule == "max"       ? value <= other
                                       : value == other;
    if (!holds) {
      std::string message = replace_all(c.failure, "{value}", std::to_string(value));
      message = replace_all(message, "{other}", std::to_string(other));
      refuse(replace_all(message, "{shapes}", py_shapes(in)));
    }
  }
}

// LaunchPlan's values for these input shapes, as the Python launcher's _dims_for computes them
// before the device limits: requirements, axes, values (an empty launch where a size divides by
// zero and an input is empty), no negative output size.
Values plan_values(const Op& op, const Shapes& in) {
  check_requirements(op, in);
  Shapes ranked;  // outputs' shapes for their ranks only: axes of outputs resolve against them
  {
    ShapeView inputs{&in, &in};
    for (const auto& o : op.outputs) {
      for (const auto& tree : o.sizes) check_axes(tree, 0, inputs);
      if (o.kind == "sizes") ranked.emplace_back(o.sizes.size(), 1);
      else if (o.kind == "like") ranked.push_back(in[o.source]);
      else {
        auto axes = reduced_axes(o.reduce, static_cast<int64_t>(in[o.source].size()));
        size_t rank = o.keepdim ? in[o.source].size() : in[o.source].size() - axes.size();
        ranked.emplace_back(rank, 1);
      }
    }
  }
  check_launch_axes(op, in, ranked);
  Shapes out;
  Values v;
  try {
    v = launch_values(op, in, out);
  } catch (const DivisionByZero&) {
    bool all_nonempty = true;
    for (const auto& shape : in) all_nonempty = all_nonempty && product(shape, 0, shape.size()) != 0;
    if (all_nonempty) refuse("a launch size divides by zero for input shapes " + py_shapes(in));
    v = Values{{0, 1, 1}, {1, 1, 1}, 0, std::vector<int64_t>(op.extras.size(), 0), {}};
    try {
      for (const auto& o : op.outputs) v.outputs.push_back(output_shape(o, in));
    } catch (const DivisionByZero&) {
      refuse("an output size divides by zero for input shapes " + py_shapes(in));
    }
  }
  for (size_t k = 0; k < op.outputs.size(); ++k) {
    if (op.outputs[k].like_input) continue;
    for (int64_t size : v.outputs[k]) {
      if (size < 0) {
        std::string message = replace_all(op.outputs[k].negative, "{shape}", py_tuple(v.outputs[k]));
        refuse(replace_all(message, "{shapes}", py_shapes(in)));
      }
    }
  }
  if (!(v.grid[0] && v.grid[1] && v.grid[2])) v.grid[0] = 0;
  return v;
}

std::string py_triple(const int64_t* values) { return py_tuple({values[0], values[1], values[2]}); }

void check_geometry(const Op& op, const Values& v, const Function& fn) {
  const Limits& lim = limits();
  if (std::min({v.grid[0], v.grid[1], v.grid[2]}) < 0) refuse("launch grid " + py_triple(v.grid) + " has a negative size");
  for (int i = 0; i < 3; ++i)
    if (v.grid[i] > lim.grid[i])
      refuse("launch grid " + py_triple(v.grid) + " exceeds the CUDA limits " + py_triple(lim.grid) + " (x, y, z)." + (op.nd ? lim.nd_hint : ""));
  bool block_ok = std::min({v.block[0], v.block[1], v.block[2]}) >= 1;
  for (int i = 0; i < 3; ++i) block_ok = block_ok && v.block[i] <= lim.block[i];
  if (!block_ok) refuse("launch block " + py_triple(v.block) + " is outside the CUDA limits 1.." + py_triple(lim.block) + " (x, y, z)");
  int64_t threads = v.block[0] * v.block[1] * v.block[2];
  bool known = fn.max_threads >= 0;  // unknown without a loaded kernel: CUDA's limits alone
  int64_t limit = known ? fn.max_threads : lim.max_threads;
  if (threads > limit)
    refuse("launch block " + py_triple(v.block) + " has " + std::to_string(threads) + " threads, more than " + std::to_string(limit) + ", " +
           (known ? "what kernel " + op.kernel_repr + " can launch with (its registers permitting)" : std::string("CUDA's limit")));
  if (v.shared < 0 || v.shared > lim.max_shared)
    refuse("dynamic shared memory of " + std::to_string(v.shared) + " bytes is outside 0.." + std::to_string(lim.max_shared));
  if (known && v.shared > fn.max_dynamic_shared)
    refuse("kernel " + op.kernel_repr + " asks for " + std::to_string(v.shared) + " bytes of dynamic shared memory per block; this device allows it " +
           std::to_string(fn.max_dynamic_shared) + " (after its static shared memory)");
}

// Each extra within its parameter's range, in the extras' order (as check_integer_values).
void check_extras(const Op& op, const Values& v) {
  std::vector<const Slot*> by_index(op.extras.size());
  for (const auto& s : op.slots)
    if (s.kind == "extra") by_index[s.index] = &s;
  for (size_t e = 0; e < by_index.size(); ++e)
    if (v.extras[e] < by_index[e]->low || v.extras[e] > by_index[e]->high)
      refuse(replace_all(by_index[e]->misfit, "{value}", std::to_string(v.extras[e])));
}

// -- the CUDA driver, opened at run time ----------------------------------------------------

struct Driver {
  using Launch = int (*)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**);
  int (*init)(unsigned) = nullptr;
  int (*device_get)(int*, int) = nullptr;
  int (*device_attribute)(int*, int, int) = nullptr;
  int (*primary_retain)(void**, int) = nullptr;
  int (*ctx_push)(void*) = nullptr;
  int (*ctx_pop)(void**) = nullptr;
  int (*module_load)(void**, const void*) = nullptr;
  int (*module_function)(void**, void*, const char*) = nullptr;
  int (*function_attribute)(int*, int, void*) = nullptr;
  int (*set_function_attribute)(void*, int, int) = nullptr;
  Launch launch = nullptr;
  int (*synchronize)(void*) = nullptr;
  int (*is_capturing)(void*, int*) = nullptr;  // status 0: the stream is not capturing
  int (*error_name)(int, const char**) = nullptr;
  int (*current_stream)(int32_t, void**) = nullptr;  // aoti_torch_get_current_cuda_stream
  std::string problem;
};

template <class F>
void bind(void* library, const char* name, F& target, std::string& problem) {
  target = reinterpret_cast<F>(dlsym(library, name));
  if (!target && problem.empty()) problem = std::string("the CUDA driver has no ") + name;
}

const Driver& driver() {
  static const Driver value = [] {
    Driver d;
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cuda) {
      d.problem = "the CUDA driver (libcuda.so.1) cannot be opened";
      return d;
    }
    bind(cuda, "cuInit", d.init, d.problem);
    bind(cuda, "cuDeviceGet", d.device_get, d.problem);
    bind(cuda, "cuDeviceGetAttribute", d.device_attribute, d.problem);
    bind(cuda, "cuDevicePrimaryCtxRetain", d.primary_retain, d.problem);
    bind(cuda, "cuCtxPushCurrent_v2", d.ctx_push, d.problem);
    bind(cuda, "cuCtxPopCurrent_v2", d.ctx_pop, d.problem);
    bind(cuda, "cuModuleLoadData", d.module_load, d.problem);
    bind(cuda, "cuModuleGetFunction", d.module_function, d.problem);
    bind(cuda, "cuFuncGetAttribute", d.function_attribute, d.problem);
    bind(cuda, "cuFuncSetAttribute", d.set_function_attribute, d.problem);
    bind(cuda, "cuLaunchKernel", d.launch, d.problem);
    bind(cuda, "cuStreamSynchronize", d.synchronize, d.problem);
    bind(cuda, "cuStreamIsCapturing", d.is_capturing, d.problem);
    bind(cuda, "cuGetErrorName", d.error_name, d.problem);
    void* torch_cuda = dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_NOLOAD);
    d.current_stream = torch_cuda ? reinterpret_cast<int (*)(int32_t, void**)>(dlsym(torch_cuda, "aoti_torch_get_current_cuda_stream")) : nullptr;
    if (!d.current_stream && d.problem.empty()) d.problem = "PyTorch's CUDA library (libtorch_cuda.so) is not loaded in this process";
    if (d.problem.empty() && d.init(0) != 0) d.problem = "cuInit failed";
    return d;
  }();
  return value;
}

// The driver's results that the runtime acts on (CUresult values).
constexpr int kSuccess = 0;
constexpr int kInvalidContext = 201;
constexpr int kInvalidHandle = 400;
constexpr int kStreamCaptureImplicit = 906;  // the legacy stream, while another stream captures

// A stream being captured into a CUDA graph cannot be synchronised (the capture would be
// invalidated), and its launches only record: KERNELOP_SYNC has nothing to check there.
bool capturing(void* stream) {
  int status = 0;
  int result = driver().is_capturing(stream, &status);
  return result == kStreamCaptureImplicit || (result == kSuccess && status != 0);
}

std::string error_name(int result) {
  const char* name = nullptr;
  if (driver().error_name && driver().error_name(result, &name) == 0 && name) return name;
  return std::to_string(result);
}

bool sticky(const std::string& name) { return limits().sticky.count(name) > 0; }

void check_driver(int result, const std::string& what) {
  if (result != kSuccess) refuse(what + " failed: " + error_name(result), Kind::Runtime);
}

std::map<int, void*>& contexts() {
  static std::map<int, void*> value;
  return value;
}

std::mutex& context_mutex() {
  static std::mutex value;
  return value;
}

void* primary_context(int device_index) {
  std::lock_guard<std::mutex> lock(context_mutex());
  auto it = contexts().find(device_index);
  if (it != contexts().end()) return it->second;
  int device = 0;
  void* ctx = nullptr;
  check_driver(driver().device_get(&device, device_index), "cuDeviceGet");
  check_driver(driver().primary_retain(&ctx, device), "cuDevicePrimaryCtxRetain");
  contexts()[device_index] = ctx;
  return ctx;
}

std::string device_arch(int device_index) {
  int device = 0, major = 0, minor = 0;
  check_driver(driver().device_get(&device, device_index), "cuDeviceGet");
  check_driver(driver().device_attribute(&major, 75, device), "cuDeviceGetAttribute");
  check_driver(driver().device_attribute(&minor, 76, device), "cuDeviceGetAttribute");
  return "sm_" + std::to_string(major) + std::to_string(minor);
}

std::atomic<uint64_t> calls{0}, module_loads{0};
using Provider = int (*)(const char* op, const char* key, const char* arch, char* error, size_t size);
std::atomic<Provider> provider{nullptr};

struct ContextPush {
  bool pushed = false;
  explicit ContextPush(void* ctx) { pushed = driver().ctx_push(ctx) == 0; }
  ~ContextPush() {
    void* popped = nullptr;
    if (pushed) driver().ctx_pop(&popped);
  }
};

// The kernel of one instantiation on one device: its binary for the device's architecture
// (asked of the provider, kernelop's Python side, on first need where one is set), loaded once.
Function function_for(Op& op, int device_index, const std::string& key) {
  auto id = std::make_pair(device_index, key);
  {
    std::lock_guard<std::mutex> lock(op.mutex);
    auto it = op.functions.find(id);
    if (it != op.functions.end()) return it->second;
  }
  if (!driver().problem.empty()) refuse(driver().problem, Kind::Runtime);
  std::string arch = device_arch(device_index);
  std::string binary_key = key + "|" + arch;
  bool known;
  {
    std::lock_guard<std::mutex> lock(op.mutex);
    known = op.binaries.count(binary_key);
  }
  Provider ask = provider.load();
  if (!known && ask) {  // no lock held: the provider takes Python's GIL
    char error[4096] = "";
    if (ask(op.name.c_str(), key.c_str(), arch.c_str(), error, sizeof error)) throw Refusal{Kind::Runtime, std::string("\x01") + error};
  }
  Binary binary;
  {
    std::lock_guard<std::mutex> lock(op.mutex);
    auto it = op.binaries.find(binary_key);
    if (it == op.binaries.end()) {
      if (op.not_built.empty()) refuse("no kernel for " + arch + " was provided", Kind::Runtime);
      std::set<std::string> built;
      for (const auto& [k, b] : op.binaries) built.insert(k.substr(k.find('|') + 1));
      std::string list;
      for (const auto& a : built) list += (list.empty() ? "" : ", ") + a;
      throw Refusal{Kind::Value, "\x01" + replace_all(replace_all(op.not_built, "{built}", list.empty() ? "no architecture" : list), "{arch}", arch)};
    }
    binary = it->second;
  }
  Function fn;
  {
    ContextPush push(primary_context(device_index));
    void* module = nullptr;
    check_driver(driver().module_load(&module, binary.cubin.data()), "cuModuleLoadData");
    module_loads++;
    check_driver(driver().module_function(&fn.handle, module, binary.symbol.c_str()), "cuModuleGetFunction(" + binary.symbol + ")");
    int max_threads = 0, static_shared = 0;
    check_driver(driver().function_attribute(&max_threads, 0, fn.handle), "cuFuncGetAttribute");
    check_driver(driver().function_attribute(&static_shared, 1, fn.handle), "cuFuncGetAttribute");
    int64_t dynamic = 48 * 1024 - static_shared;
    if (op.shared_opt_in) {
      int device = 0, optin = 0;
      check_driver(driver().device_get(&device, device_index), "cuDeviceGet");
      check_driver(driver().device_attribute(&optin, 97, device), "cuDeviceGetAttribute");
      dynamic = std::max<int64_t>(dynamic, optin - static_shared);
      check_driver(driver().set_function_attribute(fn.handle, 8, static_cast<int>(dynamic)), "cuFuncSetAttribute");
    }
    fn.max_threads = max_threads;
    fn.max_dynamic_shared = dynamic;
  }
  std::lock_guard<std::mutex> lock(op.mutex);
  return op.functions.emplace(id, fn).first->second;
}

// -- one call ---------------------------------------------------------------------------------

constexpr size_t MAX_REMEMBERED_SHAPES = 4096;
const bool sync_after_launch = [] {
  const char* value = std::getenv("KERNELOP_SYNC");
  return value && (std::string(value) == "1" || std::string(value) == "true" || std::string(value) == "yes" || std::string(value) == "on");
}();

// The first scalar argument outside its parameter's range, refused as the Python path's
// scalar_problem does (packing there fails on the same values).
void refuse_values(const std::vector<Slot>& slots, const std::vector<c10::IValue>& args) {
  for (const auto& slot : slots) {
    if (slot.kind != "scalar") continue;
    const c10::IValue& value = args[slot.index];
    if (slot.integer && (value.isInt() || value.isBool())) {
      int64_t v = value.isInt() ? value.toInt() : value.toBool();
      if (v < slot.low || v > slot.high) refuse(replace_all(slot.misfit, "{value}", std::to_string(v)));
    } else if (value.isDouble()) {
      double v = value.toDouble();
      if (v == v && std::abs(v) != INFINITY && std::abs(v) > slot.float_max) refuse(replace_all(slot.misfit, "{value}", py_float(v)));
    }
  }
}

// Why the tensors were refused, in the Python launcher's order: devices, then Tensor-ness,
// declared dtypes and one device (check_tensors), then the kernel's pointer types.
[[noreturn]] void refuse_tensors(const Op& op, const std::vector<const at::Tensor*>& tensors) {
  for (size_t i = 0; i < op.tensors.size(); ++i)
    if (tensors[i] && !tensors[i]->is_cuda())
      refuse("argument " + repr(op.tensors[i].name) + " must be a CUDA tensor (got a tensor on " + tensors[i]->device().str() + ")");
  for (size_t i = 0; i < op.tensors.size(); ++i)
    if (!tensors[i] && !op.tensors[i].optional) refuse("argument " + repr(op.tensors[i].name) + " must be a Tensor (got NoneType)", Kind::Type);
  std::map<std::string, std::pair<std::string, c10::ScalarType>> typed;
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    if (!tensors[i]) continue;
    const auto& p = op.tensors[i];
    auto dtype = tensors[i]->scalar_type();
    if (p.declared == "type") {
      if (!contains(p.type_dtypes, dtype)) {
        std::string names;
        for (auto t : p.type_dtypes) names += (names.empty() ? "" : ", ") + dtype_name(t);
        refuse("argument " + repr(p.name) + " has dtype " + torch_dtype(dtype) + "; the kernel's template parameter " + p.type_name +
                   " is instantiated for " + names, Kind::Type);
      }
      auto first = typed.emplace(p.type_name, std::make_pair(p.name, dtype)).first->second;
      if (first.second != dtype)
        refuse("argument " + repr(p.name) + " has dtype " + torch_dtype(dtype) + " but " + repr(first.first) + " has " + torch_dtype(first.second) +
                   "; both are of template type " + p.type_name + ", so they must have one dtype", Kind::Type);
    } else if (p.declared == "fixed" && dtype != p.fixed) {
      refuse("argument " + repr(p.name) + " must have dtype " + torch_dtype(p.fixed) + " (got " + torch_dtype(dtype) + ")", Kind::Type);
    }
  }
  const at::Tensor& first = *tensors[op.first_required];
  for (size_t i = 0; i < op.tensors.size(); ++i)
    if (tensors[i] && tensors[i]->device() != first.device())
      refuse("argument " + repr(op.tensors[i].name) + " is on " + tensors[i]->device().str() + " but " + repr(op.tensors[op.first_required].name) +
             " is on " + first.device().str() + "; all tensor inputs must be on one device");
  for (size_t i = 0; i < op.tensors.size(); ++i) {
    const auto& p = op.tensors[i];
    if (tensors[i] && p.has_allowed && !contains(p.allowed, tensors[i]->scalar_type())) {
      auto dtype = tensors[i]->scalar_type();
      refuse("argument " + repr(p.name) + " has dtype " + torch_dtype(dtype) + " (" + std::to_string(c10::elementSize(dtype)) + "-byte elements) " +
                 p.pointer_note, Kind::Type);
    }
  }
  refuse("the tensor arguments were refused", Kind::Type);
}

// Pack one value at the next offset aligned to its size, as packing.py lays parameters out.
template <class T>
void put(std::vector<unsigned char>& data, std::vector<size_t>& offsets, T value) {
  size_t offset = (data.size() + sizeof(T) - 1) / sizeof(T) * sizeof(T);
  data.resize(offset + sizeof(T));
  std::memcpy(data.data() + offset, &value, sizeof(T));
  offsets.push_back(offset);
}

struct NativeOp : c10::OperatorKernel {
  std::shared_ptr<Op> op;
  explicit NativeOp(std::shared_ptr<Op> op) : op(std::move(op)) {}

  void operator()(const c10::OperatorHandle&, c10::DispatchKeySet, torch::jit::Stack* stack) {
    try {
      call(*op, *stack);
    } catch (const Refusal& r) {
      std::string message = r.message[0] == '\x01' ? r.message.substr(1) : "kernelop.call(" + op->name + "): " + r.message;
      if (r.kind == Kind::Type) TORCH_CHECK_TYPE(false, message);
      if (r.kind == Kind::Value) TORCH_CHECK_VALUE(false, message);
      TORCH_CHECK(false, message);
    }
  }

  static void call(Op& op, torch::jit::Stack& stack) {
    calls++;
    const size_t n = op.scalar_at.size();
    std::vector<c10::IValue> args(std::make_move_iterator(stack.end() - n), std::make_move_iterator(stack.end()));
    stack.erase(stack.end() - n, stack.end());
    const size_t count = op.tensors.size();
    std::vector<at::Tensor> tensors(count);
    std::vector<const at::Tensor*> present(count, nullptr);
    bool failed = false;
    for (size_t i = 0; i < count; ++i) {
      const auto& value = args[op.tensors[i].position];
      if (value.isTensor() && value.toTensor().defined()) {  // None for a Tensor arrives undefined
        tensors[i] = value.toTensor();
        present[i] = &tensors[i];
      } else if (!op.tensors[i].optional) {
        failed = true;
      }
    }
    const at::Tensor* first = present[op.first_required];
    failed = failed || !first || !first->is_cuda();
    for (size_t i = 0; i < count && !failed; ++i) {
      if (!present[i]) continue;
      const auto& p = op.tensors[i];
      failed = tensors[i].device() != first->device() || (p.has_allowed && !contains(p.allowed, tensors[i].scalar_type()));
    }
    for (const auto& group : op.groups)
      for (size_t j = 1; j < group.size() && !failed; ++j)
        failed = present[group[j]] && present[group[0]] && tensors[group[j]].scalar_type() != tensors[group[0]].scalar_type();
    if (failed) refuse_tensors(op, present);
    for (const auto& slot : op.slots)
      if (slot.kind == "scalar" && (slot.ctype == "x32" || slot.ctype == "x64") && args[slot.index].isInt() && args[slot.index].toInt() < 0)
        refuse_values(op.slots, args);

    const int device = first->device().index();
    std::vector<at::Tensor> written(count);  // arguments written in place, as the caller passed them
    std::vector<int64_t> memo_key;
    Shapes in_shapes(count);
    for (size_t i = 0; i < count; ++i) {
      if (!present[i]) {
        memo_key.push_back(0);
        continue;
      }
      if (op.tensors[i].mutates) {
        written[i] = tensors[i];
        if (!tensors[i].is_contiguous() && at::has_internal_overlap(tensors[i]) == at::MemOverlap::Yes)
          refuse("argument " + repr(op.tensors[i].name) +
                 " is written in place, but some of its elements share memory (an expanded or broadcast view); pass a tensor whose elements are distinct, e.g. .clone()");
      }
      if (!tensors[i].is_contiguous()) tensors[i] = tensors[i].contiguous();
      auto sizes = tensors[i].sizes();
      in_shapes[i].assign(sizes.begin(), sizes.end());
      memo_key.push_back(static_cast<int64_t>(sizes.size()));
      memo_key.insert(memo_key.end(), sizes.begin(), sizes.end());
    }
    std::string key;
    for (const auto& group : op.groups)
      key += (key.empty() ? "" : ",") + (present[group[0]] ? dtype_name(tensors[group[0]].scalar_type()) : std::string("none"));

    std::shared_ptr<const Values> remembered;
    auto memo_id = std::make_pair(device, key);
    {
      std::lock_guard<std::mutex> lock(op.mutex);
      auto& memo = op.memo[memo_id];
      auto it = memo.find(memo_key);
      if (it != memo.end()) remembered = it->second;
    }
    if (!remembered) {
      auto computed = std::make_shared<Values>(plan_values(op, in_shapes));
      if (computed->grid[0]) {
        Function fn = function_for(op, device, key);
        check_geometry(op, *computed, fn);
        check_extras(op, *computed);
      }
      std::lock_guard<std::mutex> lock(op.mutex);
      auto& memo = op.memo[memo_id];
      if (memo.size() >= MAX_REMEMBERED_SHAPES) memo.clear();
      memo[memo_key] = computed;
      remembered = computed;
    }
    const Values& v = *remembered;

    std::vector<at::Tensor> outputs;
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      const Output& o = op.outputs[k];
      if (o.init == "copy") {
        outputs.push_back(tensors[o.copy_of].clone());
        continue;
      }
      c10::Scalar fill = o.fill_is_int ? c10::Scalar(o.fill_int) : c10::Scalar(o.fill_float);
      if (o.like_input) {
        outputs.push_back(o.init == "fill" ? at::full_like(tensors[o.source], fill) : at::empty_like(tensors[o.source]));
        continue;
      }
      auto options = first->options().dtype(tensors[o.dtype_source].scalar_type());
      outputs.push_back(o.init == "fill" ? at::full(v.outputs[k], fill, options) : at::empty(v.outputs[k], options));
    }

    if (v.grid[0]) {
      Function fn = function_for(op, device, key);
      refuse_values(op.slots, args);
      std::vector<unsigned char> data;
      data.reserve(8 * op.slots.size());
      std::vector<size_t> offsets;
      for (const auto& slot : op.slots) {
        if (slot.kind == "tensor" || slot.kind == "output") {
          void* pointer = slot.kind == "output" ? outputs[slot.index].data_ptr() : (present[slot.index] ? tensors[slot.index].data_ptr() : nullptr);
          put(data, offsets, reinterpret_cast<uint64_t>(pointer));
          continue;
        }
        const c10::IValue* value = slot.kind == "scalar" ? &args[slot.index] : nullptr;
        if (slot.integer) {
          int64_t x = value ? (value->isInt() ? value->toInt() : value->isBool() ? value->toBool() : static_cast<int64_t>(value->toDouble()))
                            : v.extras[slot.index];
          if (slot.ctype == "i32" || slot.ctype == "x32") put(data, offsets, static_cast<int32_t>(x));
          else if (slot.ctype == "u32") put(data, offsets, static_cast<uint32_t>(x));
          else put(data, offsets, static_cast<int64_t>(x));
        } else {
          double x = value->isDouble() ? value->toDouble() : value->isInt() ? static_cast<double>(value->toInt()) : value->toBool();
          if (slot.ctype == "f32") {
            put(data, offsets, static_cast<float>(x));
          } else if (slot.ctype == "f64") {
            put(data, offsets, x);
          } else {
            put(data, offsets, static_cast<unsigned char>(x != 0));
          }
        }
      }
      std::vector<void*> params(offsets.size());
      for (size_t i = 0; i < offsets.size(); ++i) params[i] = data.data() + offsets[i];
      void* stream = nullptr;
      check_driver(driver().current_stream(device, &stream), "aoti_torch_get_current_cuda_stream");
      auto launch = [&] {
        return driver().launch(fn.handle, v.grid[0], v.grid[1], v.grid[2], v.block[0], v.block[1], v.block[2], v.shared, stream, params.data(), nullptr);
      };
      int result = launch();
      std::optional<ContextPush> push;  // held until the launch is checked (and synchronised)
      if (result == kInvalidContext || result == kInvalidHandle) {  // no context current on this thread: push the device's
        push.emplace(primary_context(device));
        result = launch();
      }
      std::string failure;
      if (result != kSuccess) failure = "cuLaunchKernel failed: " + error_name(result);
      else if (sync_after_launch && !capturing(stream) && (result = driver().synchronize(stream)) != kSuccess)
        failure = "cuStreamSynchronize failed: " + error_name(result);
      if (!failure.empty())
        refuse("kernel " + op.kernel_repr + " failed: " + failure + "." + (sticky(error_name(result)) ? " The CUDA context is now unusable: restart the process." : ""),
               Kind::Runtime);
    }
    for (size_t i = 0; i < count; ++i)
      if (written[i].defined() && !written[i].is_same(tensors[i])) written[i].copy_(tensors[i]);
    for (auto& out : outputs) stack.emplace_back(std::move(out));
  }
};

// -- the registry ---------------------------------------------------------------------------

std::mutex& registry_mutex() {
  static std::mutex value;
  return value;
}

std::map<std::string, std::shared_ptr<Op>>& registry() {
  static std::map<std::string, std::shared_ptr<Op>> value;
  return value;
}

std::string namespace_of(const std::string& name) { return name.substr(0, name.find("::")); }
std::string short_name(const std::string& name) { return name.substr(name.find("::") + 2); }

void register_op(const std::shared_ptr<Op>& op, bool define) {
  std::string ns = namespace_of(op->name);
  if (define) {
    auto fragment = std::make_unique<torch::Library>(torch::Library::FRAGMENT, ns, std::nullopt, __FILE__, __LINE__);
    fragment->def((short_name(op->name) + op->schema).c_str());
    op->libraries.push_back(std::move(fragment));
  }
  for (auto key : {c10::DispatchKey::CUDA, c10::DispatchKey::CPU}) {
    auto impl = std::make_unique<torch::Library>(torch::Library::IMPL, ns, key, __FILE__, __LINE__);
    impl->impl(short_name(op->name).c_str(), torch::CppFunction::makeFromBoxedFunctor(std::make_unique<NativeOp>(op)));
    op->libraries.push_back(std::move(impl));
  }
}

// Parse a program; register each op (with its schema when ``define``); all or nothing.
void define_program(const std::string& text, bool define, const std::string& folder) {
  std::istringstream lines(text);
  std::string line;
  const std::string format = std::to_string(KERNELOP_PROGRAM_FORMAT);
  if (!std::getline(lines, line) || line != "kernelop-native-program " + format)
    throw std::runtime_error("expected a kernelop native program of format " + format + " (got " + line.substr(0, 60) + ")");
  std::vector<std::shared_ptr<Op>> ops;
  while (std::getline(lines, line)) {
    Tokens in(line);
    std::string what;
    if (!(in.stream >> what)) continue;
    if (what == "limits") {
      Limits& lim = limits();
      lim.max_threads = in.integer();
      lim.max_shared = in.integer();
      for (auto& g : lim.grid) g = in.integer();
      for (auto& b : lim.block) b = in.integer();
    } else if (what == "ndhint") {
      limits().nd_hint = in.text();
    } else if (what == "sticky") {
      for (std::string name; in.stream >> name;) limits().sticky.insert(name);
    } else if (what == "op") {
      ops.push_back(parse_op(in, lines));
    } else if (what == "kernel") {  // a bundle's binary: op, instantiation, arch, symbol, file
      std::string name = in.text(), key = in.text(), arch = in.text(), symbol = in.text(), file = in.text();
      std::ifstream stream(folder + "/" + file, std::ios::binary);
      if (!stream) throw std::runtime_error("cannot read " + folder + "/" + file);
      std::string cubin((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
      for (auto& op : ops)
        if (op->name == name) op->binaries[key + "|" + arch] = Binary{cubin, symbol};
    } else {
      throw std::runtime_error("unknown line: " + line);
    }
  }
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> done;
  try {
    for (auto& op : ops) {
      if (registry().count(op->name)) throw std::runtime_error("op " + op->name + " is registered already");
      register_op(op, define);
      registry()[op->name] = op;
      done.push_back(op->name);
    }
  } catch (...) {
    for (const auto& name : done) registry().erase(name);
    throw;
  }
}

std::string folder_of_this_library() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&folder_of_this_library), &info) || !info.dli_fname) return "";
  std::string path = info.dli_fname;
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// A bundle's library registers the bundle's ops when it is loaded.
const bool bundle_loaded = [] {
  std::string folder = folder_of_this_library();
  std::ifstream stream(folder + "/kernelop_ops.program");
  if (!stream) return false;
  std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  try {
    define_program(text, true, folder);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kernelop: %s/kernelop_ops.program: %s\n", folder.c_str(), e.what());
    return false;
  }
  return true;
}();

int fail(const std::string& message, char* error, size_t size) {
  if (error && size) std::snprintf(error, size, "%s", message.c_str());
  return 1;
}

}  // namespace kernelop_native

// -- the C interface kernelop's Python side calls through ctypes -----------------------------

using namespace kernelop_native;

#define KERNELOP_EXPORT __attribute__((visibility("default")))

extern "C" {

KERNELOP_EXPORT int kernelop_native_define(const char* program, char* error, size_t error_size) {
  try {
    define_program(program, false, ".");
  } catch (const std::exception& e) {
    return fail(e.what(), error, error_size);
  }
  return 0;
}

KERNELOP_EXPORT int kernelop_native_remove(const char* name) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  if (it == registry().end()) return 1;
  it->second->libraries.clear();  // deregisters its impls
  registry().erase(it);
  return 0;
}

KERNELOP_EXPORT int kernelop_native_add_kernel(const char* name, const char* key, const char* arch, const char* cubin, size_t size, const char* symbol) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  if (it == registry().end()) return 1;
  std::lock_guard<std::mutex> op_lock(it->second->mutex);
  it->second->binaries[std::string(key) + "|" + arch] = Binary{std::string(cubin, size), symbol};
  return 0;
}

KERNELOP_EXPORT void kernelop_native_set_provider(Provider function) { provider.store(function); }

KERNELOP_EXPORT uint64_t kernelop_native_calls() { return calls.load(); }
KERNELOP_EXPORT uint64_t kernelop_native_module_loads() { return module_loads.load(); }

// The launch values for input shapes (ranks[i] sizes each, concatenated), as a call computes
// and checks them, CUDA's limits standing in for the kernel's: grid, block, shared memory, extras, then each output's
// shape. Returns how many values were written, or -1 (ValueError) / -2 (TypeError) with the
// message in ``error``. For tests of the interpreter without a GPU.
KERNELOP_EXPORT int64_t kernelop_native_launch_values(const char* name, int count, const int64_t* ranks, const int64_t* sizes, int64_t* out, size_t out_size,
                                      char* error, size_t error_size) {
  std::shared_ptr<Op> op;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(name);
    if (it == registry().end()) return fail("no such op", error, error_size), -3;
    op = it->second;
  }
  Shapes in(count);
  for (int i = 0; i < count; ++i) {
    in[i].assign(sizes, sizes + ranks[i]);
    sizes += ranks[i];
  }
  std::vector<int64_t> values;
  try {
    Values v = plan_values(*op, in);
    if (v.grid[0]) {
      check_geometry(*op, v, Function{nullptr, -1, -1});
      check_extras(*op, v);
    }
    values.insert(values.end(), v.grid, v.grid + 3);
    values.insert(values.end(), v.block, v.block + 3);
    values.push_back(v.shared);
    values.insert(values.end(), v.extras.begin(), v.extras.end());
    for (const auto& shape : v.outputs) values.insert(values.end(), shape.begin(), shape.end());
  } catch (const Refusal& r) {
    fail("kernelop.call(" + op->name + "): " + r.message, error, error_size);
    return r.kind == Kind::Type ? -2 : -1;
  }
  if (values.size() > out_size) return fail("the output buffer is too small", error, error_size), -3;
  std::copy(values.begin(), values.end(), out);
  return static_cast<int64_t>(values.size());
}

}  // extern "C"
