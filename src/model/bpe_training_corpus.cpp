// The built-in training corpus for synthetic BPE vocabularies: original English prose on
// computing, science and history, a little dialogue, and code in several languages, so that a
// vocabulary trained on it learns common English words, whitespace runs and code punctuation.
// It is a compile-time constant: training a vocabulary needs no file or network access.
#include "model/bpe_trainer.h"

namespace infergrid {
namespace {

constexpr std::string_view kCorpus =
    R"corpus(A Short History of Computing Machines

Long before anyone spoke of software, people built devices to help them count. The abacus, with its beads sliding on rods, let merchants in Babylon, China and Rome add and subtract faster than they could with pebbles in the sand. In the seventeenth century Blaise Pascal built a mechanical calculator to help his father, a tax collector, with the endless sums of his trade. A few decades later Gottfried Wilhelm Leibniz designed a machine that could also multiply, using a stepped drum that is still called the Leibniz wheel.

The idea of a machine that could follow a program came from the weaving industry. In 1804 Joseph Marie Jacquard showed a loom controlled by a chain of punched cards: where a card had a hole, a hook could pass and lift a thread; where it had none, the thread stayed down. Change the cards and the loom wove a different pattern. Charles Babbage saw in those cards a way to tell a calculating engine what to do. His Analytical Engine, designed in the 1830s, had a store for numbers, a mill for arithmetic, and a reader for cards carrying both operations and data. It was never finished, partly because the precision engineering it needed was beyond the workshops of the time, and partly because Babbage kept improving the design instead of building it.

Ada Lovelace, translating an article about the engine from Italian, added notes three times longer than the original. In one of them she wrote out, step by step, how the engine could compute Bernoulli numbers. Her table of operations, with its variables and its repeated cycles, is often described as the first published computer program. She also understood something that many of her contemporaries missed: that the engine manipulated symbols, not just numbers, and that it might one day compose music if the rules of harmony could be expressed in its notation.

Electricity changed everything. Herman Hollerith used punched cards and electrical contacts to tabulate the 1890 census of the United States, finishing in months a job that had taken years by hand. His company later merged with others to become International Business Machines. During the Second World War, the need to break codes and to compute artillery tables pushed engineers toward fully electronic machines. Colossus, built at Bletchley Park, used about two thousand vacuum tubes to search for the settings of the Lorenz cipher. ENIAC, completed in 1945 at the University of Pennsylvania, filled a large room, weighed around thirty tons and could perform five thousand additions per second.

ENIAC was programmed by setting switches and plugging cables, a process that could take days. The women who did this work, among them Kathleen McNulty, Jean Jennings and Frances Bilas, had to understand the machine at the level of its individual units. John von Neumann, who consulted on the follow-up project, wrote a report describing a machine that would keep its program in the same memory as its data. That design, known as the stored-program architecture, is the plan that almost every computer has followed since.

The transistor, invented at Bell Labs in 1947, replaced the hot and fragile vacuum tube with a small piece of semiconductor. The integrated circuit, developed independently by Jack Kilby and Robert Noyce around 1958, put many transistors on a single chip. In 1965 Gordon Moore observed that the number of components on a chip was doubling roughly every year, later revised to every two years. For half a century that observation, called Moore's law, held well enough to shape the plans of an entire industry.

By the 1970s a whole processor fit on one chip. The Intel 4004, released in 1971, had 2,300 transistors and ran at 740 kilohertz. It was designed for a calculator. Within a decade, hobbyists were building personal computers around chips like the 8080, the 6502 and the Z80, and companies such as Apple, Commodore and IBM were selling them to homes, schools and offices. The graphical user interface, pioneered at Xerox PARC and popularised by the Macintosh in 1984, made these machines approachable for people who had never typed a command.

Networks tied the machines together. ARPANET sent its first message in 1969, between UCLA and the Stanford Research Institute; the system crashed after the first two letters of the word "login". The TCP/IP protocols, standardised in the early 1980s, let different networks talk to one another, and in 1989 Tim Berners-Lee proposed the World Wide Web at CERN as a way for physicists to share documents. Today billions of devices exchange packets every second, and most people carry a computer in their pocket that is millions of times faster than ENIAC.

How a Processor Runs a Program

At the heart of every computer is a loop. The processor fetches an instruction from memory, decodes it to find out what it means, executes it, and writes the result back. Then it fetches the next one. A register called the program counter remembers where the next instruction lives; a jump or a branch simply writes a new value into it.

Instructions are small. One might add two registers, another might load a word from memory, a third might compare two numbers and branch if the first is smaller. Everything a computer does, from playing a video to training a language model, is built out of millions or billions of these tiny steps. What makes modern processors fast is not that any single step is clever, but that they overlap many steps at once.

Pipelining splits the work on each instruction into stages, like an assembly line. While one instruction is being executed, the next is being decoded and the one after that is being fetched. Superscalar processors go further and start several instructions in the same cycle when they do not depend on each other. Out-of-order execution lets the processor look ahead in the instruction stream and run whatever is ready, while a reorder buffer makes sure results become visible in program order.

Branches are a problem for a pipeline, because the processor does not know which instruction comes next until the branch is resolved. Rather than wait, it guesses. Branch predictors keep a history of recent outcomes and are right more than ninety-five percent of the time on typical code. When a guess is wrong, the speculative work is thrown away and the pipeline restarts from the correct path, costing a dozen or more cycles.

Vector instructions, also called SIMD for single instruction, multiple data, apply the same operation to several values at once. A 256-bit register holds eight 32-bit floating-point numbers, so one instruction can perform eight multiplications. Numerical code such as matrix multiplication, image filtering and neural network inference benefits enormously. Writing such code well means arranging data so that neighbouring values are used together, and keeping the vector units busy while waiting for memory.

The Memory Hierarchy

A modern processor can perform an arithmetic operation in well under a nanosecond, but fetching a value from main memory can take a hundred nanoseconds. To hide that gap, computers use a hierarchy of memories, each smaller and faster than the one below it. Registers hold the values being worked on right now. The level one cache, a few tens of kilobytes, answers in about four cycles. The level two cache is larger and slower, and the level three cache, shared among cores, may hold tens of megabytes. Below that lies main memory, and below that, solid-state drives and spinning disks.

Caches work because programs tend to reuse data they touched recently, which is called temporal locality, and to touch data near what they touched before, which is called spatial locality. Memory moves between levels in blocks called cache lines, usually sixty-four bytes. Reading one byte brings its neighbours along for free, so walking through an array in order is fast, while jumping around at random is slow.

Programmers who care about performance think about memory first. A matrix stored row by row should be traversed row by row. A loop that processes a large data set in small tiles that fit in cache can run many times faster than one that streams the whole set through for each step. Large language models are a striking example: generating one token requires reading every weight of the model from memory, so the speed of generation is often limited by memory bandwidth rather than by arithmetic. Storing weights in fewer bits, a technique called quantization, helps precisely because it reduces the number of bytes that must be moved.

Operating Systems

An operating system is the program that manages the hardware on behalf of all the other programs. It decides which process runs on which core and for how long, gives each process the illusion of its own private memory, and provides a uniform way to read files, send packets and draw on the screen.

Virtual memory is one of its central ideas. Each process sees a large, contiguous address space, but the operating system maps pages of that space onto physical memory, or onto disk, as it sees fit. A page table records the mapping, and a small cache called the translation lookaside buffer keeps recent translations close to the processor. Memory-mapped files use the same machinery: a file on disk appears as a range of addresses, and the system loads pages only when they are touched. Loading a large model this way can take almost no time, because nothing is read until it is needed.

Scheduling is another. A scheduler must balance fairness, so that every program makes progress, against responsiveness, so that the program a person is using reacts quickly, and against throughput, so that the machine does as much work as possible. Threads within a process share memory, which makes communication cheap but introduces the danger of two threads modifying the same data at the same time. Locks, atomic operations and careful design keep such races away.

Files, too, are an abstraction. A disk is just a long array of blocks; a file system turns it into named files in nested directories, with permissions, timestamps and the guarantee that a half-finished write will not corrupt everything after a power failure. Journaling file systems write their intentions to a log before acting on them, so that after a crash they can finish or undo whatever was in progress. A common trick for applications is to write a new file under a temporary name and then rename it over the old one, because a rename is atomic.

Networks and Protocols

When you load a web page, your computer first asks a name server to translate the site's name into a numeric address. It then opens a connection using the Transmission Control Protocol, which turns the unreliable delivery of individual packets into a reliable, ordered stream of bytes. TCP numbers every byte, waits for acknowledgements, and resends whatever goes missing. It also slows down when it detects congestion, so that the network as a whole does not collapse under load.

On top of TCP sits the Hypertext Transfer Protocol. A request names a method, such as GET or POST, a path, and a set of headers; the response carries a status code, more headers, and a body. Status 200 means success, 404 means the resource was not found, and 500 means the server ran into an error. Modern services often stream their responses, sending data as soon as it is ready rather than waiting for the whole answer, which is how a chat assistant can show its reply word by word.

Latency and bandwidth are different things. Bandwidth is how many bytes per second a link can carry; latency is how long a single byte takes to arrive. A satellite link may have plenty of bandwidth but a latency of half a second, while a cable across a data centre might carry less but answer in microseconds. For interactive systems, the time to the first byte often matters more than the total throughput, and engineers measure percentiles, such as the 99th percentile latency, because averages hide the slow requests that users actually notice.

The Printing Press and the Spread of Ideas

Around 1450, in the German city of Mainz, Johannes Gutenberg combined several existing technologies into a system for printing books. He cast individual letters in metal using an adjustable mould, so that thousands of identical pieces of type could be made quickly. He developed an oil-based ink that stuck to metal, and he adapted the screw press used for making wine and olive oil. His Bible, printed in about 180 copies, is still admired for the evenness of its pages.

Within fifty years printing shops had opened in more than two hundred European cities, and millions of books had been produced. The cost of a book fell dramatically. Scholars could compare identical copies of a text instead of relying on manuscripts that each contained their own errors. Maps, tables and diagrams could be reproduced exactly. Historians argue about how much the press caused the Reformation, the scientific revolution and the rise of literacy, but few doubt that it made all three easier.

Printing also standardised languages. Printers chose particular spellings and forms, and readers across a region grew used to them. Dictionaries and grammars followed. In this sense the press did for written language something like what the railway later did for time: it replaced countless local variations with a shared convention that everyone could rely on.

The Scientific Method

Science is less a collection of facts than a way of finding things out. A scientist notices something puzzling, proposes an explanation, works out what that explanation predicts, and then checks whether the prediction comes true. If it does not, the explanation must be changed or abandoned. If it does, confidence grows, but never to absolute certainty, because a future observation might still contradict it.

Good experiments control for alternatives. If you want to know whether a fertiliser helps plants grow, you give it to some plants and not to others, keeping everything else, such as light, water and soil, the same. Better still, you assign plants to the two groups at random, so that any hidden differences are spread evenly. Medical trials go further and keep both patients and doctors unaware of who received the treatment, because expectations can change outcomes.

Measurement is never perfect, so scientists report uncertainties. A length of 12.4 plus or minus 0.2 centimetres says both what was measured and how much to trust it. Statistics provides the tools for deciding whether a difference between two groups is larger than chance alone would produce. Replication, the repetition of an experiment by independent researchers, is the final check: a result that only one laboratory can obtain is treated with suspicion.

Planets, Orbits and Gravity

For most of history, people believed that the Earth stood still at the centre of the universe and that the Sun, Moon, planets and stars revolved around it. Ptolemy's system, with its circles upon circles, predicted the positions of the planets well enough to be used for fourteen centuries. In 1543 Nicolaus Copernicus published a book placing the Sun at the centre instead. His model was not more accurate at first, but it was simpler in an important way: it explained why Mars, Jupiter and Saturn sometimes seem to move backwards across the sky.

Johannes Kepler, working with the precise observations of Tycho Brahe, found that the planets move not in circles but in ellipses, with the Sun at one focus. He discovered that a planet sweeps out equal areas in equal times, moving faster when it is close to the Sun, and that the square of a planet's year is proportional to the cube of its average distance. Galileo Galilei turned a telescope to the sky and saw the moons of Jupiter, the phases of Venus and the mountains of the Moon, all of which fitted the new picture better than the old one.

Isaac Newton tied these results together. In his Principia, published in 1687, he showed that a single law, in which every mass attracts every other mass with a force proportional to the product of the masses and inversely proportional to the square of the distance between them, explains both the fall of an apple and the orbit of the Moon. With his laws of motion, it predicted the return of comets and the shape of the Earth, flattened at the poles by its rotation. Two centuries later, small discrepancies in the orbit of Mercury pointed the way to Einstein's general theory of relativity, in which gravity is the curvature of space and time.

Cells, Genes and Evolution

All known living things are made of cells. The simplest, bacteria, are single cells a few micrometres long, with no nucleus. Plants, animals and fungi are built from more complex cells that keep their genetic material inside a nucleus and contain specialised compartments, such as mitochondria, which release energy from food, and, in plants, chloroplasts, which capture energy from sunlight.

The instructions for building and running a cell are written in DNA, a long molecule made of four kinds of units, usually abbreviated A, C, G and T. The sequence of these letters along a stretch of DNA called a gene specifies the sequence of amino acids in a protein, three letters at a time. Proteins fold into intricate shapes and do most of the work of the cell: they speed up chemical reactions, carry signals, build structures and copy the DNA itself.

Charles Darwin and Alfred Russel Wallace independently proposed that species change over time through natural selection. Individuals vary, some of that variation is inherited, and individuals whose traits suit their environment tend to leave more offspring. Over many generations, the traits that help survival and reproduction become more common. Darwin did not know how inheritance worked; the answer came from Gregor Mendel's experiments with peas and, in the twentieth century, from the discovery of the structure of DNA by Rosalind Franklin, James Watson, Francis Crick and Maurice Wilkins.

Evolution explains both the unity and the diversity of life. Humans share most of their genes with other mammals, and many with yeast, because all of them descend from common ancestors. It also explains why bacteria become resistant to antibiotics: when a drug kills most of a population, the few cells that happen to survive it multiply and pass on whatever let them survive.

The Periodic Table

By the middle of the nineteenth century chemists knew of about sixty elements, and several had noticed that elements with similar properties appeared at regular intervals when arranged by atomic weight. In 1869 Dmitri Mendeleev published a table that did more than organise what was known. He left gaps where the pattern demanded an element that had not been found, and predicted the properties of the missing elements. When gallium, scandium and germanium were discovered over the next seventeen years, their properties matched his predictions closely.

We now know why the pattern exists. Each element is defined by the number of protons in its nucleus, and its chemistry is governed by how its electrons are arranged in shells around that nucleus. Elements in the same column have the same number of electrons in their outer shell, and so they react in similar ways. The noble gases on the right have full outer shells and barely react at all; the alkali metals on the left have a single outer electron they give up eagerly, which is why sodium fizzes and burns when dropped into water.

Mathematics: Zero, Algebra and Proof

Counting is ancient, but writing numbers efficiently took a long time to invent. Roman numerals are fine for recording a quantity but awkward for calculation. The positional system we use today, in which the value of a digit depends on where it stands, developed in India, along with a symbol for zero that could serve both as a placeholder and as a number in its own right. Scholars in Baghdad, among them Muhammad ibn Musa al-Khwarizmi, adopted and extended these ideas. His book on calculation by completion and balancing gave us the word algebra, and his own name gave us the word algorithm.

Algebra lets us reason about quantities without knowing their values. If a number doubled and increased by three gives eleven, we write 2x + 3 = 11 and find x = 4 by undoing each step. Descartes joined algebra to geometry by describing points with coordinates, so that a circle becomes the equation x^2 + y^2 = r^2 and geometric questions become calculations.

What sets mathematics apart is proof. Euclid's Elements, written around 300 BC, starts from a handful of definitions and assumptions and derives hundreds of results, each following logically from the ones before. One of the most famous shows that there are infinitely many prime numbers: suppose there were only finitely many, multiply them all together and add one, and you get a number that none of them divides, which is a contradiction. The argument is more than two thousand years old and is as convincing today as it was then.

Baking Bread

Bread needs only four ingredients: flour, water, salt and yeast. Mix 500 grams of strong flour with 350 grams of warm water, 10 grams of salt and 7 grams of dried yeast, and knead the dough for about ten minutes, until it is smooth and springs back when pressed. Kneading develops gluten, a network of proteins that traps the gas produced by the yeast and lets the loaf rise.

Leave the dough in a covered bowl until it has doubled in size, which takes an hour or two in a warm kitchen and much longer in a cool one. Slow fermentation gives a deeper flavour, so many bakers let their dough rise overnight in the refrigerator. Then knock it back, shape it into a tight ball or a long loaf, and let it rise again. Bake it in a very hot oven, around 230 degrees Celsius, for thirty to forty minutes. A tray of water in the bottom of the oven produces steam, which keeps the crust soft long enough for the loaf to expand, and then helps it turn crisp and golden. The bread is done when it sounds hollow when tapped underneath.

Weather and Climate

Weather is what happens in the atmosphere over hours and days: a storm, a heat wave, a week of drizzle. Climate is the pattern of weather over decades. The distinction matters, because a cold winter in one place says little about whether the planet as a whole is warming, while a steady rise in average temperatures measured across thousands of stations over a century says a great deal.

The Sun heats the equator more than the poles, and the atmosphere and oceans carry that heat toward higher latitudes. The rotation of the Earth deflects moving air, creating the trade winds, the westerlies and the great spiralling systems of high and low pressure that appear on weather maps. Water evaporates from warm seas, rises, cools and condenses into clouds, releasing heat that can feed thunderstorms and hurricanes.

Certain gases in the atmosphere, chiefly water vapour and carbon dioxide, let sunlight through but absorb some of the heat that the Earth radiates back toward space. Without this greenhouse effect the planet would be frozen. Since the industrial revolution, burning coal, oil and gas has raised the concentration of carbon dioxide from about 280 parts per million to more than 420, and global average temperatures have risen by more than one degree Celsius. Climate models, which divide the atmosphere and oceans into a grid and solve the equations of fluid motion on it, help scientists project how much more warming different choices will bring.

The Industrial Revolution

Beginning in Britain in the late eighteenth century, a series of inventions transformed how goods were made. Spinning machines such as the spinning jenny and the water frame multiplied the amount of thread one worker could produce. James Watt's improvements to the steam engine, especially the separate condenser, made it efficient enough to drive factories far from rivers. Iron became cheap once it could be smelted with coke instead of charcoal, and railways, arriving in the 1820s and 1830s, moved coal, cotton and people faster than any horse.

The changes brought wealth and misery together. Cities grew faster than their drains, and cholera spread through contaminated water until John Snow traced an outbreak in London to a single pump on Broad Street. Children worked long hours in mills and mines. Over the following century, reforms limited working hours, made schooling compulsory and built sewers and water systems, and average incomes began the long rise that continues today.

A Conversation About Learning to Program

"I keep starting tutorials and giving up," said Maya. "Everything works when I copy the example, and nothing works when I try something of my own."

"That's normal," said her friend Tomas. "Copying teaches you what correct code looks like. Breaking it teaches you how it works. Pick something small that you actually want, like a program that renames your photos by date, and build that."

"What if I get stuck?"

"You will. Read the error message slowly, out loud if you have to. It usually tells you the file and the line. Print the values of your variables just before the line that fails. Half the time the bug is that something you thought was a number is actually a string, or a list is empty when you expected three items."

"And the other half?"

"The other half, you explain the problem to someone else, and you notice the answer halfway through the sentence. People call it rubber duck debugging, because a rubber duck works just as well as a person."

Maya laughed. "I don't have a rubber duck."

"Then you'll have to make do with me. Show me what you've written so far."

Notes on Writing Clear Code

Code is read far more often than it is written, so clarity is worth more than cleverness. Choose names that say what a thing is for: bytes_read is better than n, and parse_header is better than process. Keep functions short enough to understand in one sitting, and give each a single job. When a comment is needed, let it explain why the code does something surprising, not restate what the code already says.

Handle errors where they can be handled, and report them with enough context to act on. "File not found" is less useful than "could not open config.toml in /etc/app: no such file". Test the behaviour that users depend on, including the edge cases: empty inputs, very large inputs, invalid data and the boundaries between valid and invalid. A test that fails when behaviour changes, and only then, is worth more than ten tests that merely exercise lines.

Measure before optimising. Intuition about what is slow is often wrong, and a profiler will show where the time really goes. When you do optimise, keep the simple version around as a reference and check that the fast version produces the same results on many random inputs.

Code Examples

A small C++ function that counts words in a string:

#include <cctype>
#include <string_view>

// Counts maximal runs of non-space characters.
int count_words(std::string_view text) {
  int count = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++count;
    in_word = !space;
  }
  return count;
}

A binary search over a sorted vector:

template <typename T>
std::optional<size_t> find_sorted(const std::vector<T>& values, const T& key) {
  size_t lo = 0;
  size_t hi = values.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (values[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < values.size() && values[lo] == key) return lo;
  return std::nullopt;
}

A matrix-vector product, the operation that dominates language model inference:

void matvec(const float* w, const float* x, float* y, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    float sum = 0.0f;
    const float* row = w + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) sum += row[c] * x[c];
    y[r] = sum;
  }
}

The same idea in Python, with a softmax for good measure:

import math

def softmax(logits):
    """Turns scores into probabilities that sum to one."""
    peak = max(logits)
    exps = [math.exp(v - peak) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]

def greedy_decode(model, prompt_tokens, max_new_tokens=32, eos_id=2):
    tokens = list(prompt_tokens)
    for _ in range(max_new_tokens):
        logits = model(tokens)[-1]
        next_token = max(range(len(logits)), key=lambda i: logits[i])
        tokens.append(next_token)
        if next_token == eos_id:
            break
    return tokens[len(prompt_tokens):]

class LruCache:
    def __init__(self, capacity):
        self.capacity = capacity
        self.items = {}

    def get(self, key, default=None):
        if key not in self.items:
            return default
        value = self.items.pop(key)
        self.items[key] = value
        return value

    def put(self, key, value):
        self.items.pop(key, None)
        self.items[key] = value
        if len(self.items) > self.capacity:
            oldest = next(iter(self.items))
            del self.items[oldest]

A shell session that builds a project and runs its tests:

$ git clone https://example.com/project.git
$ cd project
$ cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
$ ninja -C build
$ ctest --test-dir build -L unit --output-on-failure
100% tests passed, 0 tests failed out of 42
$ ./build/bin/tool --help | head -n 5

A configuration file in JSON:

{
  "model": "models/tiny-llama-q8_0.gguf",
  "threads": 8,
  "context_length": 4096,
  "sampling": {"temperature": 0.7, "top_p": 0.9, "seed": 1234},
  "server": {"host": "127.0.0.1", "port": 8080, "max_batch": 16}
}

A query in SQL:

SELECT country, COUNT(*) AS cities, AVG(population) AS mean_population
FROM cities
WHERE population > 100000
GROUP BY country
HAVING COUNT(*) >= 3
ORDER BY mean_population DESC
LIMIT 10;

A little Rust:

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn main() {
    let pairs = [(48, 18), (17, 5), (100, 75)];
    for (a, b) in pairs.iter() {
        println!("gcd({}, {}) = {}", a, b, gcd(*a, *b));
    }
}

And some JavaScript that fetches data and renders a list:

async function showUsers(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`request failed with status ${response.status}`);
  }
  const users = await response.json();
  const list = document.querySelector("#users");
  list.innerHTML = "";
  for (const user of users) {
    const item = document.createElement("li");
    item.textContent = `${user.name} <${user.email}>`;
    list.appendChild(item);
  }
}

How Language Models Generate Text

A language model reads a sequence of tokens and assigns a probability to every possible next token. Tokens are pieces of text: common words are often a single token, while rare words are split into several pieces, and any byte can be represented if nothing better fits. The model itself is a stack of transformer layers. Each layer lets every position look at the earlier positions through attention, mixes the information it gathers, and passes the result through a small feed-forward network.

To generate text, the model is run on the prompt, a token is chosen from the predicted distribution, appended to the sequence, and the process repeats. Greedy decoding always takes the most likely token; sampling with a temperature picks at random, with lower temperatures favouring the likely choices. Top-k and top-p sampling trim away the long tail of unlikely tokens before choosing.

Attention needs the keys and values computed for every earlier position. Recomputing them at each step would be wasteful, so engines keep them in a key-value cache. The cache grows with the length of the conversation and, for long contexts and many simultaneous users, it can use more memory than the model weights. Serving systems therefore manage it carefully: they divide it into fixed-size blocks, share blocks between requests that begin with the same prompt, and evict or move blocks when memory runs short.

Batching is the other key to efficiency. Because generating one token for one user reads all the weights, generating one token each for sixteen users in the same pass costs little more. Continuous batching adds new requests to the running batch as soon as others finish, keeping the hardware busy without making anyone wait for the slowest request.

Rivers and the Sea

A river begins as rain or melting snow gathering in small streams high in the hills. The streams join, and the growing river carves a valley, carrying sand and gravel downhill. In its upper course it is fast and narrow, cutting down into the rock; lower down it widens and slows, winding across a flat plain in loops called meanders. Where it meets the sea it may drop its load of sediment to build a delta, as the Nile and the Mississippi have done over thousands of years.

The sea itself is never still. Tides, raised by the pull of the Moon and, to a lesser degree, the Sun, lift and lower the water twice a day along most coasts. Winds drive surface currents, and differences in temperature and saltiness drive slow, deep currents that circle the globe over centuries. The Gulf Stream carries warm water from the Caribbean across the Atlantic, which is part of why winters in western Europe are milder than those at the same latitude in Canada.

Music and Numbers

When a string vibrates, it produces not just one frequency but a whole series: the fundamental, and overtones at two, three, four and more times that frequency. Pythagoras is said to have discovered that strings whose lengths are in simple ratios, such as two to one or three to two, sound pleasant together. The octave corresponds to a ratio of 2:1 and the perfect fifth to 3:2.

Building a scale from pure ratios causes trouble, because stacking twelve perfect fifths overshoots seven octaves by a small amount known as the Pythagorean comma. Over centuries, musicians tried many compromises. The one that won in Western music is equal temperament, which divides the octave into twelve equal steps, each a factor of the twelfth root of two, about 1.0595. No interval except the octave is perfectly pure, but every key sounds equally good, which let composers such as Bach move freely between them.

Languages and Writing

There are about seven thousand languages spoken in the world today, but only a few hundred have a long written tradition. Writing was invented independently at least three times: in Mesopotamia around 3200 BC, in China, and in Mesoamerica. The earliest Mesopotamian tablets are accounts: so many sheep, so many jars of oil. Over time the pictures became stylised wedges pressed into clay, and signs came to stand for sounds as well as things.

Alphabets, in which each sign stands for a single sound, descend from a script developed by Semitic-speaking workers in Egypt around 1800 BC. The Phoenicians spread it around the Mediterranean, the Greeks added letters for vowels, and the Romans adapted the Greek letters into the alphabet used for English and many other languages. Other systems took different paths: Chinese characters combine meaning and sound, Japanese mixes characters with two syllabaries, and Korean Hangul, designed in the fifteenth century, groups letters into syllable blocks.

Computers had to learn all of these. Early systems used ASCII, which covers only unaccented English letters, digits and punctuation in 128 codes. Unicode, begun in the late 1980s, aims to give every character in every writing system its own number, and now includes more than 140,000 of them, from Latin and Cyrillic to Devanagari, Arabic, Chinese and emoji. UTF-8 encodes those numbers as one to four bytes, keeping ASCII text unchanged, which is one reason it became the dominant encoding on the web.

Libraries and Catalogues

The library of Alexandria, founded in the third century BC, tried to collect every book in the Greek-speaking world. Its scholars compiled catalogues, edited texts and compared versions. Callimachus drew up the Pinakes, a list of authors and their works organised by subject, which was one of the first library catalogues. Medieval monasteries kept smaller collections and copied manuscripts by hand, while the great libraries of Baghdad, Cordoba and Timbuktu preserved and extended the learning of the ancient world.

Modern libraries face the opposite problem: not scarcity but abundance. Classification schemes such as the Dewey Decimal System and the Library of Congress system put every book in a place where related books are nearby. Search engines do something similar for the web, building an index that maps each word to the pages that contain it, and ranking the results by how useful they are likely to be. The index for billions of pages is spread over thousands of machines, each holding a slice, and a single query fans out to all of them and gathers the best answers in a fraction of a second.

A Walk in the Forest

The path leaves the road at a wooden gate and climbs gently through a plantation of pines. After ten minutes it crosses a stream on two flat stones and enters older woodland: oak, beech and birch, with holly in the understory and ferns along the banks. In spring the ground is blue with bluebells; in autumn it is covered in copper leaves that crackle underfoot.

Stop for a moment and listen. A wren, tiny and loud, scolds from a bramble. Somewhere higher up a woodpecker drums on a dead branch. The wind moves through the canopy with a sound like distant surf. If you are lucky and quiet, a deer may cross the path ahead, pause to look at you, and vanish between the trees with a flick of its white tail.

The forest is busy in ways that are harder to see. Fungi thread through the soil, linking the roots of different trees and trading nutrients for sugars. Fallen logs are slowly eaten by beetles, woodlice and bacteria, returning their substance to the ground. Nothing is wasted; everything that dies becomes food for something else.

Frequently Asked Questions

Q: How long does the battery last?
A: About ten hours of normal use, or three days on standby.

Q: Can I change the language of the interface?
A: Yes. Open Settings, choose Language, and pick from the list. The change takes effect immediately.

Q: What should I do if the device will not turn on?
A: Charge it for at least thirty minutes, then hold the power button for fifteen seconds. If it still does not start, contact support and quote the serial number printed on the back.

Q: Is my data backed up?
A: Only if backup is enabled. Check Settings > Account > Backup, where you can also see the date of the most recent copy.

Closing Thoughts

Every tool described here, from the abacus to the language model, extends what a person can do alone. The printing press let one author reach thousands of readers; the telescope let one observer see moons no eye had seen; the computer lets one programmer describe a process once and have it carried out billions of times without fatigue or error. Each also brought new problems, from the spread of misinformation to the concentration of power, and each required people to learn new skills and new habits of thought.

The best way to understand a tool is to use it, take it apart, and build a small version of it yourself. A calculator made of gears, a radio made of a crystal and a coil, a compiler for a tiny language, a model that predicts the next letter of a text: each teaches more than any amount of reading about the real thing. Start small, measure carefully, write down what you learn, and share it with someone else.
)corpus";

}  // namespace

std::string_view default_bpe_training_corpus() {
  return kCorpus;
}

}  // namespace infergrid
