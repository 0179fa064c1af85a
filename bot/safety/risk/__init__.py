"""Risk detector for free text (DESIGN §2.6): pure, synchronous, no database, no Telegram.

Every word list, pattern, emoji map and context cue lives in `content/risk/*.yaml`
(`common.yaml` for normalisation data and cross-language rules, one file per language for the
rest), so a clinician can change the rules without touching code.

How a message is read:

1. **Normalisation** of what people really type, keeping a map back to the original text:
   case, accents (`é`→`e`, `ñ`→`n`), curly apostrophes (dropped, so `don't` = `dont`), emoji
   (mapped to `:name:` tokens), simple leetspeak (`k1ll`, `5uicide`, `d13`), spaced or dotted
   letters (`k i l l`, `k.i.l.l`), repeated letters (every run of one letter is squeezed to a
   single letter, in the text and in the patterns alike, so `killlll` = `kill` = `kil`), and
   filler words (`literally`, `honestly`, `just`...) are dropped.
2. **Rules**: each rule has a category, a severity and regex patterns. Patterns are written as
   plain lower-case text: apostrophes are dropped, letters squeezed, a single space between
   words also matches no space (`kill myself` finds `killmyself`) and word boundaries are added
   at both ends. `{name}` inserts a shared `vocab` entry.
3. **Context**, per match: a negation cue a few words before (`not`, `never`, `no`...) cancels
   the match, but only when the words between the cue and the phrase are fillers (`going to`,
   `want to`...), never across a sentence, a comma or `but`; a past-time marker close by
   (`two years ago`, `when I was using`, `used to`) turns it into history unless a present-time
   marker in the same clause is closer or an intention (`I'm going to`) comes with the phrase,
   and a past-tense phrase is history too when the message says the feeling is over (`I don't
   feel like that anymore`); rules marked `own` ignore conditions (`what if I drank`) and
   sentences whose subject is someone else (`my brother came over and got drunk`);
   discussion cues (`we talked about`) silence topic rules; `unless` / `soften` patterns, joke
   cues (`lol`) and resolution cues (`but I called my sponsor`) adjust single rules; hyperbole
   spans (`dying to see`, `could kill for`) are ignored.
4. **Combinations** raise the level when separate signals meet (`💊` + `goodbye`, use + racing
   heart, a weapon + "he's outside").

The result is the highest-severity match; ties go to the detector's category order (`DETECTED_CATEGORIES`). A
literal-word prefilter decides which patterns can match at all, so a message costs well under
a millisecond.

The package, each module importing only those above it:

- `result`: what the detector answers (its subset of the kernel's `Severity` and `Category`,
  with its tie-break order; `Match`, `RiskResult`);
- `compiled`: the one cache of compiled patterns, keeping their engine code for `prepared`;
- `normalize`: step 1, the text as the rules read it, with its map back to the original;
- `patterns`: step 2, a pattern as written in the content made into the regex that runs;
- `prefilter`: the literal words that decide which rules can match a text at all;
- `model`: the learned second opinion, trained from the labelled messages;
- `detector`: steps 3 and 4, the compiled rules applied to one message (`RiskDetector`);
- `loader`: `content/risk/*.yaml` read, validated (file and line of each problem) and compiled;
- `registry`: the detectors of this process, built once (`get_detector`, `crisis_detector`);
- `prepared`: the built detector written to the data folder and read back at the next start;
- `cli`: `iop-bot risk check`.
"""
